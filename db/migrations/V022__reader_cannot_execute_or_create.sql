-- Issue 15, item 1: the read-only role could destroy data. raw.maintain_partitions and
-- raw.ensure_partitions are SECURITY DEFINER (they run as their owner, the admin) and PostgreSQL
-- gives EXECUTE on every new function to PUBLIC, so market_reader, after `begin read write`
-- (default_transaction_read_only is only a default), dropped every raw.ticks partition with
-- maintain_partitions(now() + interval '100 years'). Read-only is now a matter of privileges:
-- the reader holds SELECT on tables and views, USAGE on schemas and CONNECT, nothing else that
-- writes; a read-write transaction gives it nothing more.

-- 1. Functions, procedures and aggregates in raw and rt: no EXECUTE for PUBLIC or the reader;
--    the writer gets exactly what the pipeline calls (spark_streaming/sink.py, sample_data and the
--    benchmarks call ensure_partitions; the scheduled maintenance runs maintain_partitions).
--    raw.partition_bounds is only called inside them, as their owner.
revoke all on all routines in schema raw, rt from public, market_reader;
grant execute on function raw.ensure_partitions(text, timestamptz, timestamptz) to market_writer;
grant execute on function raw.maintain_partitions(timestamptz) to market_writer;

-- Routines made before this migration in any other schema (dbt's udf, on a database where dbt
-- already ran): no EXECUTE for PUBLIC either. Their owner (the writer) keeps it; what dbt grants
-- explicitly on each run is its own decision (see docs/OPERATIONS.md).
do $$
declare
    s name;
begin
    for s in
        select n.nspname from pg_namespace n
        where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'
          and pg_get_userbyid(n.nspowner) in (current_user, 'market_writer', 'pg_database_owner')
    loop
        execute format('revoke execute on all routines in schema %I from public', s);
    end loop;
end
$$;

-- 2. Routines created later get no EXECUTE for PUBLIC: those of the admin (this migration's role,
--    which owns raw and rt) and those dbt creates as market_writer (macros/ta_functions.sql).
--    Tables, sequences and schemas give PUBLIC nothing by default; made explicit all the same.
alter default privileges revoke execute on routines from public;
alter default privileges for role market_writer revoke execute on routines from public;
alter default privileges for role market_writer revoke all on schemas from public;
alter default privileges for role market_writer revoke all on tables from public;
alter default privileges for role market_writer revoke all on sequences from public;

-- 3. No temporary tables and no new schemas for anyone but the roles granted them by name (the
--    writer keeps CREATE and TEMPORARY from V001: dbt creates schemas, the stream sink COPYs
--    through temp tables). CONNECT stays as it is.
do $$
begin
    execute format('revoke temporary, create on database %I from public, market_reader', current_database());
end
$$;

-- 4. The reader creates nothing in any schema: public (PostgreSQL 15 already keeps CREATE there
--    from PUBLIC; a database made from an older template may not), raw, rt and whatever exists.
--    Schemas made later by the writer give the reader USAGE only (V001's default privileges).
do $$
declare
    s name;
begin
    for s in
        select n.nspname from pg_namespace n
        where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'
    loop
        execute format('revoke create on schema %I from public, market_reader', s);
    end loop;
end
$$;

-- 5. Large objects are writes outside any table privilege: every role may create them by default,
--    and nothing in the pipeline uses them. Only roles granted these functions (none) and
--    superusers may create one in this database.
revoke execute on function pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid),
    pg_catalog.lo_from_bytea(oid, bytea) from public;

-- Declarative range partitioning by event date (UTC) with a policy table:
--   raw.partition_policy   which parent tables are managed, their granularity, how far ahead
--                          partitions are made and how long they are kept;
--   raw.ensure_partitions  makes the partitions covering a time range (writers call it for the
--                          dates in a batch before inserting: see docs/OPERATIONS.md);
--   raw.maintain_partitions makes partitions ahead and drops those past retention (scheduled).
-- A row whose date has no partition fails with PostgreSQL's own error
-- 'no partition of relation "<table>" found for row' (SQLSTATE 23514): nothing lands in a catch-all.

create table if not exists raw.partition_policy (
    parent_table   text primary key,
    granularity    text     not null check (granularity in ('day', 'month')),
    premake        integer  not null default 3 check (premake >= 0),
    retention      interval not null
);

comment on table raw.partition_policy is
    'Managed range-partitioned tables: partition size, partitions made ahead, retention.';

create or replace function raw.partition_bounds(granularity text, ts timestamptz)
returns table (lower_bound timestamptz, upper_bound timestamptz)
language sql
immutable
as $$
    select
        date_trunc(granularity, ts, 'UTC') as lower_bound,
        date_trunc(granularity, ts, 'UTC') + ('1 ' || granularity)::interval as upper_bound
$$;

create or replace function raw.ensure_partitions(parent text, from_ts timestamptz, to_ts timestamptz)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, raw
as $$
declare
    pol       raw.partition_policy;
    cursor_ts timestamptz;
    lo        timestamptz;
    hi        timestamptz;
    part_name text;
    made      integer := 0;
begin
    select * into pol from raw.partition_policy where parent_table = parent;
    if not found then
        raise exception 'table % has no partition policy in raw.partition_policy', parent
            using errcode = 'undefined_object';
    end if;
    if to_ts < from_ts then
        raise exception 'ensure_partitions(%): range end % is before start %', parent, to_ts, from_ts;
    end if;
    cursor_ts := from_ts;
    loop
        select b.lower_bound, b.upper_bound into lo, hi
        from raw.partition_bounds(pol.granularity, cursor_ts) as b;
        part_name := parent || '_p' || to_char(lo at time zone 'UTC',
            case pol.granularity when 'day' then 'YYYYMMDD' else 'YYYYMM' end);
        if to_regclass(part_name) is null then
            -- serialise concurrent creators of the same partition
            perform pg_advisory_xact_lock(hashtext(part_name));
            if to_regclass(part_name) is null then
                execute format(
                    'create table %s partition of %s for values from (%L) to (%L)',
                    part_name, parent, lo, hi
                );
                made := made + 1;
            end if;
        end if;
        exit when hi > to_ts;
        cursor_ts := hi;
    end loop;
    return made;
end
$$;

comment on function raw.ensure_partitions(text, timestamptz, timestamptz) is
    'Create the missing partitions of a managed table covering [from_ts, to_ts]; returns how many.';

create or replace function raw.maintain_partitions(at_time timestamptz default now())
returns table (action text, partition_name text)
language plpgsql
security definer
set search_path = pg_catalog, raw
as $$
declare
    pol  raw.partition_policy;
    part record;
    ahead interval;
begin
    for pol in select * from raw.partition_policy order by parent_table loop
        ahead := (pol.premake || ' ' || pol.granularity)::interval;
        if raw.ensure_partitions(pol.parent_table, at_time - ('1 ' || pol.granularity)::interval,
                                 at_time + ahead) > 0 then
            action := 'ensured';
            partition_name := pol.parent_table;
            return next;
        end if;
        for part in
            select c.oid::regclass::text as name,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 'TO \(''([^'']+)''\)'))[1]::timestamptz as upper_bound
            from pg_inherits i
            join pg_class c on c.oid = i.inhrelid
            where i.inhparent = pol.parent_table::regclass
        loop
            if part.upper_bound is not null and part.upper_bound <= at_time - pol.retention then
                execute format('drop table %s', part.name);
                action := 'dropped';
                partition_name := part.name;
                return next;
            end if;
        end loop;
    end loop;
end
$$;

comment on function raw.maintain_partitions(timestamptz) is
    'Make partitions ahead for every managed table and drop those wholly past retention.';

grant execute on function raw.ensure_partitions(text, timestamptz, timestamptz) to market_writer;
grant execute on function raw.maintain_partitions(timestamptz) to market_writer;
grant select on raw.partition_policy to market_writer, market_reader;

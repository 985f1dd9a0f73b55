-- Schemas and roles. Passwords are not here: the migration runner sets them from the environment.
-- raw: records as landed from Kafka. rt: real-time bars, indicators, signals (spark_streaming).
-- dbt creates staging, intermediate, marts and quality itself, as the writer role.

do $$
begin
    if not exists (select from pg_roles where rolname = 'market_writer') then
        create role market_writer login;
    end if;
    if not exists (select from pg_roles where rolname = 'market_reader') then
        create role market_reader login;
    end if;
end
$$;

comment on role market_writer is 'Pipeline writer: ingest/stream sinks and dbt.';
comment on role market_reader is 'Read-only: dashboard and analysts.';

create schema if not exists raw;
create schema if not exists rt;

comment on schema raw is 'Records as landed from Kafka, range-partitioned by event date.';
comment on schema rt is 'Real-time outputs of spark_streaming: 1-minute bars, indicators, signals.';

-- the writer may create dbt's schemas in this database
do $$
begin
    execute format('grant connect, create, temporary on database %I to market_writer', current_database());
    execute format('grant connect on database %I to market_reader', current_database());
end
$$;

grant usage, create on schema raw, rt to market_writer;
grant usage on schema raw, rt to market_reader;

-- whatever the admin creates in raw/rt: writer reads and writes, reader reads
alter default privileges in schema raw, rt grant select, insert, update, delete on tables to market_writer;
alter default privileges in schema raw, rt grant usage, select on sequences to market_writer;
alter default privileges in schema raw, rt grant select on tables to market_reader;

-- whatever the writer creates (dbt schemas, tables, views): reader reads
alter default privileges for role market_writer grant usage on schemas to market_reader;
alter default privileges for role market_writer grant select on tables to market_reader;

-- the reader can never write, whatever grants come later by mistake
alter role market_reader set default_transaction_read_only = on;
grant pg_monitor to market_reader;

-- Issue 14, with V024: room in each page of rt.bars_1m and rt.indicators_1m for the revisions of
-- the open bars. An update is HOT only if the new row version fits in the same page; with pages
-- packed full (fillfactor 100) the stream's revisions of a bar spill to other pages as ordinary
-- updates. A partition policy may now give its new partitions a fillfactor; the stream's two
-- revised tables get 70. Measured (bench/rt_hot_updates.py, 1,000 symbols, docs/STREAMING.md): the
-- sink's upsert of the open bars 9.6 ms p50 and 37 % HOT without room, 6.9 ms and 96 % HOT with it;
-- dbt's bounded read 11.1 -> 5.9 ms (the revised rows stay in their pages); today's partition about
-- the same size (60.7 against 56.8 MiB: the room is taken by dead versions otherwise).

alter table raw.partition_policy add column if not exists fillfactor integer
    check (fillfactor between 10 and 100);

comment on column raw.partition_policy.fillfactor is
    'Fillfactor of the partitions ensure_partitions makes (null: PostgreSQL''s default, 100).';

update raw.partition_policy set fillfactor = 70 where parent_table in ('rt.bars_1m', 'rt.indicators_1m');

-- V002's function, with the policy's fillfactor on each partition it makes
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
                    'create table %s partition of %s for values from (%L) to (%L)%s',
                    part_name, parent, lo, hi,
                    case when pol.fillfactor is not null
                         then format(' with (fillfactor = %s)', pol.fillfactor) else '' end
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

-- Partitions already made: those still to be written get the room in the pages they add from now on
-- (pages already written keep theirs until rewritten).
do $$
declare
    part record;
begin
    for part in
        select format('%I.%I', n.nspname, c.relname) as name, p.fillfactor
        from raw.partition_policy p
        join pg_inherits i on i.inhparent = p.parent_table::regclass
        join pg_class c on c.oid = i.inhrelid
        join pg_namespace n on n.oid = c.relnamespace
        where p.fillfactor is not null
    loop
        execute format('alter table %s set (fillfactor = %s)', part.name, part.fillfactor);
    end loop;
end
$$;

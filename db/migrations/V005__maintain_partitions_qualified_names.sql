-- raw.maintain_partitions reported dropped partitions without their schema (search_path made
-- regclass text unqualified); report schema-qualified names.

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
            select format('%I.%I', n.nspname, c.relname) as name,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 'TO \(''([^'']+)''\)'))[1]::timestamptz as upper_bound
            from pg_inherits i
            join pg_class c on c.oid = i.inhrelid
            join pg_namespace n on n.oid = c.relnamespace
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


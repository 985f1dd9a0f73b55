{#- No two rows share the values of `columns` (optionally among rows matching `where`).
    Returns one row per duplicated key with its count. Quality dimension: uniqueness. -#}
{% test unique_combination(model, columns, where=none) %}
select
    {{ columns | join(', ') }},
    count(*) as duplicates
from {{ model }}
{% if where %}where {{ where }}{% endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

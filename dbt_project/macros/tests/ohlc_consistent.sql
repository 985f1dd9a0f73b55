{#- OHLC consistency: prices positive, high the highest and low the lowest of the bar.
    Returns the offending rows. Quality dimension: consistency. -#}
{% test ohlc_consistent(model, open='open', high='high', low='low', close='close') %}
select *
from {{ model }}
where
    not (
        {{ low }} > 0
        and {{ high }} >= greatest({{ open }}, {{ close }}, {{ low }})
        and {{ low }} <= least({{ open }}, {{ close }}, {{ high }})
    )
    or {{ open }} is null or {{ high }} is null or {{ low }} is null or {{ close }} is null
{% endtest %}

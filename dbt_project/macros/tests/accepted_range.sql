{#- Values of column_name inside [min_value, max_value] (either bound optional; exclusive bounds
    with inclusive=false). Nulls pass (test them with not_null). Quality dimension: validity. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true, where=none) %}
{%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error("accepted_range needs min_value or max_value") }}
{%- endif -%}
{%- set lower_op = '>=' if inclusive else '>' -%}
{%- set upper_op = '<=' if inclusive else '<' -%}
select *
from {{ model }}
where
    {{ column_name }} is not null
    {% if where %}and ({{ where }}){% endif %}
    and not (
        true
        {% if min_value is not none %}and {{ column_name }} {{ lower_op }} {{ min_value }}{% endif %}
        {% if max_value is not none %}and {{ column_name }} {{ upper_op }} {{ max_value }}{% endif %}
    )
{% endtest %}

{#- The columns of a daily bar, in the order every daily model keeps them (symbol, trade_date, open,
    high, low, close, volume), one per line, qualified with `relation` when given. -#}
{% macro daily_bar_columns(relation=none, indent=8) -%}
    {%- set prefix = relation ~ '.' if relation else '' -%}
    {%- set columns = ['symbol', 'trade_date', 'open', 'high', 'low', 'close', 'volume'] -%}
    {%- for column in columns -%}
        {{ prefix ~ column }}{{ ",\n" ~ (" " * indent) if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

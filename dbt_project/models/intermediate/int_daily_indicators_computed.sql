{{
    config(
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': true}, {'columns': ['dbt_updated_at']}],
    )
}}

{%- set ma_short = var('ma_short') | int -%}
{%- set ma_long = var('ma_long') | int -%}

-- Daily indicators per symbol, equal to TA-Lib on the same closes:
--   ma_short / ma_long  SMA by running sums: sum to this row minus sum to `period` rows back
--   rsi, macd, signal   the udf.ta_recursive aggregate (Wilder RSI, MACD with TA-Lib's seeding)
-- Incremental: for each symbol with new or changed days, rows are recomputed from its first
-- changed day, resuming from the state stored on the row before it (ta_state, kept on a symbol's
-- last var('ta_state_days') rows) and re-reading only the ma_long closes before it that the moving
-- averages still need; a change older than the kept state recomputes the symbol from its first day.

with bars as (
    select * from {{ ref('int_daily_bars_unioned') }}
),

changed_symbols as (
    select
        symbol,
        min(trade_date) as from_date
    from bars
    where {{ changed_since_last_run() }}
    group by symbol
),

-- read by the incremental branch of new_rows only (a full build has no previous state)
previous_state as (  -- noqa: ST03
    -- the stored row just before each symbol's first changed day, if it kept its state (a
    -- symbol's last var('ta_state_days') rows do); else the symbol is recomputed from its first day
    {% if is_incremental() %}
        select
            changed_symbols.symbol,
            case
                when before_row.ta_state is not null then changed_symbols.from_date else '-infinity'::date
            end as from_date,
            case when before_row.ta_state is not null then before_row.row_num else 0 end as row_num_before,
            before_row.ta_state::float8[] as ta_state
        from changed_symbols
        left join lateral (
            select
                stored.row_num,
                stored.ta_state
            from {{ this }} as stored
            where stored.symbol = changed_symbols.symbol and stored.trade_date < changed_symbols.from_date
            order by stored.trade_date desc
            limit 1
        ) as before_row on true
    {% else %}
        select
            symbol,
            from_date,
            0::bigint as row_num_before,
            null::float8[] as ta_state
        from changed_symbols
    {% endif %}
),

new_rows as (
    {% if is_incremental() %}
        select
            {{ daily_bar_columns('bars', indent=12) }},
            bars.source_interval,
            previous_state.row_num_before,
            previous_state.ta_state as seed_state
        from bars
        inner join previous_state
            on bars.symbol = previous_state.symbol and bars.trade_date >= previous_state.from_date
    {% else %}
        -- a full build: every row is new and starts from nothing. Read without the join, so that
        -- the unique (symbol, trade_date) index of the table feeds the window below in key order,
        -- instead of a sort of all 1.26M rows (the empty context rows drop out of the union)
        select
            {{ daily_bar_columns(indent=12) }},
            source_interval,
            0::bigint as row_num_before,
            null::float8[] as seed_state
        from {{ ref('int_daily_bars_unioned') }}
    {% endif %}
),

context_rows as (
    -- closes before the first changed day that the moving averages of the new rows (and of the
    -- day before the first of them, for crosses) still need
    {% if is_incremental() %}
        select
            stored.symbol,
            stored.trade_date,
            stored.close
        from previous_state
        cross join lateral (
            select
                s.symbol,
                s.trade_date,
                s.close
            from {{ this }} as s
            where s.symbol = previous_state.symbol and s.trade_date < previous_state.from_date
            order by s.trade_date desc
            limit {{ ma_long }}
        ) as stored
    {% else %}
        select
            null::text as symbol,
            null::date as trade_date,
            null::float8 as close
        where false
    {% endif %}
),

series as (
    select
        {{ daily_bar_columns() }},
        source_interval,
        row_num_before,
        seed_state,
        true as is_new
    from new_rows
    union all
    select
        symbol,
        trade_date,
        null::float8 as open,
        null::float8 as high,
        null::float8 as low,
        close,
        null::float8 as volume,
        null::text as source_interval,
        null::bigint as row_num_before,
        null::float8[] as seed_state,
        false as is_new
    from context_rows
),

one_pass as (
    -- one sort by (symbol, trade_date): running sums over context and new rows, the recursive
    -- indicators over the new rows only (they resume from seed_state)
    select
        *,
        row_num_before + count(*) filter (where is_new) over by_date as row_num,
        sum(close) over by_date as close_sum,
        udf.ta_recursive(
            close,
            seed_state,
            {{ var('macd_fast') | int }},
            {{ var('macd_slow') | int }},
            {{ var('macd_signal') | int }},
            {{ var('rsi_period') | int }}
        ) filter (where is_new) over by_date as ta_state
    from series
    window by_date as (partition by symbol order by trade_date rows between unbounded preceding and current row)
),

with_moving_averages as (
    select
        *,
        case
            when row_num >= {{ ma_short }} then
                (close_sum - coalesce(lag(close_sum, {{ ma_short }}) over by_date, 0)) / {{ ma_short }}
        end as ma_short,
        case
            when row_num >= {{ ma_long }} then
                (close_sum - coalesce(lag(close_sum, {{ ma_long }}) over by_date, 0)) / {{ ma_long }}
        end as ma_long,
        case
            when row_num > {{ ma_short }} then
                (lag(close_sum) over by_date - coalesce(lag(close_sum, {{ ma_short + 1 }}) over by_date, 0))
                / {{ ma_short }}
        end as previous_ma_short,
        case
            when row_num > {{ ma_long }} then
                (lag(close_sum) over by_date - coalesce(lag(close_sum, {{ ma_long + 1 }}) over by_date, 0))
                / {{ ma_long }}
        end as previous_ma_long,
        lead(trade_date, {{ var('ta_state_days') | int }}) over by_date is null as keeps_state
    from one_pass
    window by_date as (partition by symbol order by trade_date)
),

final as (
    select
        {{ daily_bar_columns() }},
        source_interval,
        row_num,
        ma_short as ma_50,
        ma_long as ma_200,
        previous_ma_short as previous_ma_50,
        previous_ma_long as previous_ma_200,
        ta_state[9] as rsi_14,
        ta_state[5] as macd,
        ta_state[10] as macd_signal,
        ta_state[5] - ta_state[10] as macd_hist,
        -- the state an incremental run resumes from, kept on a symbol's last var('ta_state_days')
        -- rows only: on every row it was 2-4 s of a full build's write (1.26M arrays); a change
        -- older than that recomputes the symbol from its first day (2,520 rows of it in 10 years).
        -- float8[] (its text form cost 2.3 s more per 1.26M rows); a table built as text before
        -- keeps working, arrays are assigned to text by I/O conversion
        case when keeps_state then ta_state end as ta_state,
        now() as dbt_updated_at
    from with_moving_averages
    where is_new
)

select * from final

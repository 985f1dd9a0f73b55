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
-- changed day, resuming from the state stored on the row before it (ta_state) and re-reading only
-- the ma_long - 1 closes before it that the moving averages still need.

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

previous_state as (
    -- the stored row just before each symbol's first changed day (none on a full build)
    {% if is_incremental() %}
        select
            changed_symbols.symbol,
            changed_symbols.from_date,
            coalesce(before_row.row_num, 0) as row_num_before,
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
    select
        bars.symbol,
        bars.trade_date,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        bars.source_interval,
        previous_state.row_num_before + row_number() over (
            partition by bars.symbol order by bars.trade_date
        ) as row_num,
        previous_state.ta_state as seed_state
    from bars
    inner join previous_state
        on bars.symbol = previous_state.symbol and bars.trade_date >= previous_state.from_date
),

context_rows as (
    -- closes before the first changed day that the moving averages of the new rows (and of the
    -- day before the first of them, for crosses) still need
    {% if is_incremental() %}
        select
            stored.symbol,
            stored.trade_date,
            stored.close,
            stored.row_num
        from previous_state
        cross join lateral (
            select
                s.symbol,
                s.trade_date,
                s.close,
                s.row_num
            from {{ this }} as s
            where s.symbol = previous_state.symbol and s.trade_date < previous_state.from_date
            order by s.trade_date desc
            limit {{ ma_long }}
        ) as stored
    {% else %}
        select
            null::text as symbol,
            null::date as trade_date,
            null::float8 as close,
            null::bigint as row_num
        where false
    {% endif %}
),

running_sums as (
    select
        symbol,
        trade_date,
        close,
        row_num,
        is_new,
        sum(close) over by_date as close_sum
    from (
        select
            symbol,
            trade_date,
            close,
            row_num,
            true as is_new
        from new_rows
        union all
        select
            symbol,
            trade_date,
            close,
            row_num,
            false as is_new
        from context_rows
    ) as series
    window by_date as (partition by symbol order by trade_date rows between unbounded preceding and current row)
),

moving_averages as (
    select
        symbol,
        trade_date,
        is_new,
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
        end as previous_ma_long
    from running_sums
    window by_date as (partition by symbol order by trade_date)
),

recursive_indicators as (
    select
        symbol,
        trade_date,
        open,
        high,
        low,
        close,
        volume,
        source_interval,
        row_num,
        udf.ta_recursive(
            close,
            seed_state,
            {{ var('macd_fast') | int }},
            {{ var('macd_slow') | int }},
            {{ var('macd_signal') | int }},
            {{ var('rsi_period') | int }}
        ) over (partition by symbol order by trade_date rows between unbounded preceding and current row)
            as ta_state
    from new_rows
),

final as (
    select
        recursive_indicators.symbol,
        recursive_indicators.trade_date,
        recursive_indicators.open,
        recursive_indicators.high,
        recursive_indicators.low,
        recursive_indicators.close,
        recursive_indicators.volume,
        recursive_indicators.source_interval,
        recursive_indicators.row_num,
        moving_averages.ma_short as ma_50,
        moving_averages.ma_long as ma_200,
        moving_averages.previous_ma_short as previous_ma_50,
        moving_averages.previous_ma_long as previous_ma_200,
        recursive_indicators.ta_state[9] as rsi_14,
        recursive_indicators.ta_state[5] as macd,
        recursive_indicators.ta_state[10] as macd_signal,
        recursive_indicators.ta_state[5] - recursive_indicators.ta_state[10] as macd_hist,
        -- as text (exact: PostgreSQL prints float8 round-trip safe), so that unit tests can give it
        recursive_indicators.ta_state::text as ta_state,
        now() as dbt_updated_at
    from recursive_indicators
    inner join moving_averages
        on
            recursive_indicators.symbol = moving_averages.symbol
            and recursive_indicators.trade_date = moving_averages.trade_date
            and moving_averages.is_new
)

select * from final

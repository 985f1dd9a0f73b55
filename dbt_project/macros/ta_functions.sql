{#-
  TA-Lib-exact recursive indicators as one custom PostgreSQL aggregate, used as a window function
  ordered by date: udf.ta_recursive(close, seed_state, fast, slow, signal, rsi_period).

  Its state (float8[]) carries everything the recursions and TA-Lib's seeding need, so an
  incremental run resumes from the state stored on a symbol's last row (seed_state) instead of
  re-reading its history:
    [1] n        rows seen so far (the next row's 0-based index)
    [2] prev     previous close
    [3] slow     sum of the first `slow` closes, then EMA(slow)
    [4] fast     sum of closes slow-fast .. slow-1, then EMA(fast)  (TA-Lib's MACD seeds both EMAs
                 at index slow-1: the fast one with the SMA of the `fast` closes ending there)
    [5] macd     EMA(fast) - EMA(slow), output from index slow-1+signal-1 (TA-Lib's lookback)
    [6] sig      sum of the first `signal` MACD values, then EMA(signal) of MACD
    [7] gain     sum of the first `rsi_period` gains, then Wilder's average gain
    [8] loss     likewise for losses
    [9] rsi      100 * gain / (gain + loss), 0 when gain + loss is within 1e-8 of zero; from index rsi_period
    [10] signal  the MACD signal output (null during warm-up)
  Arithmetic follows TA-Lib's C code operation by operation (EMA: ((x - prev) * k) + prev with
  k = 2 / (n + 1); Wilder: (avg * (n - 1) + x) / n), in IEEE double precision.
-#}
{% macro create_ta_functions() %}
create schema if not exists udf;
select pg_advisory_xact_lock(hashtext('marketpipe.udf'));

create or replace function udf.ta_recursive_step(
    state float8[], close float8, seed float8[], fast integer, slow integer, signal integer, rsi_n integer
) returns float8[]
language plpgsql
immutable
parallel safe
as $fn$
declare
    i      integer;
    d      float8;
    m      float8;
    j      integer;
begin
    if state is null then
        state := coalesce(seed, array[0, null, 0, 0, null, 0, 0, 0, null, null]::float8[]);
    end if;
    i := state[1]::integer;

    -- MACD: both EMAs seeded at index slow-1
    if i < slow then
        state[3] := state[3] + close;
        if i >= slow - fast then
            state[4] := state[4] + close;
        end if;
        if i = slow - 1 then
            state[3] := state[3] / slow;
            state[4] := state[4] / fast;
        end if;
    else
        state[3] := ((close - state[3]) * (2.0::float8 / (slow + 1))) + state[3];
        state[4] := ((close - state[4]) * (2.0::float8 / (fast + 1))) + state[4];
    end if;
    if i >= slow - 1 then
        m := state[4] - state[3];
        j := i - (slow - 1);
        if j < signal then
            state[6] := state[6] + m;
            if j = signal - 1 then
                state[6] := state[6] / signal;
            end if;
        else
            state[6] := ((m - state[6]) * (2.0::float8 / (signal + 1))) + state[6];
        end if;
        if j >= signal - 1 then
            state[5] := m;
            state[10] := state[6];
        end if;
    end if;

    -- RSI, Wilder's smoothing, seeded with the plain average of the first rsi_n changes
    if i >= 1 then
        d := close - state[2];
        if i <= rsi_n then
            if d < 0 then state[8] := state[8] - d; else state[7] := state[7] + d; end if;
            if i = rsi_n then
                state[8] := state[8] / rsi_n;
                state[7] := state[7] / rsi_n;
            end if;
        else
            state[8] := state[8] * (rsi_n - 1);
            state[7] := state[7] * (rsi_n - 1);
            if d < 0 then state[8] := state[8] - d; else state[7] := state[7] + d; end if;
            state[8] := state[8] / rsi_n;
            state[7] := state[7] / rsi_n;
        end if;
        if i >= rsi_n then
            d := state[7] + state[8];
            if d > -0.00000001 and d < 0.00000001 then
                state[9] := 0;
            else
                state[9] := 100.0 * (state[7] / d);
            end if;
        end if;
    end if;

    state[1] := i + 1;
    state[2] := close;
    return state;
end
$fn$;

create or replace aggregate udf.ta_recursive(
    close float8, seed float8[], fast integer, slow integer, signal integer, rsi_n integer
) (
    sfunc = udf.ta_recursive_step,
    stype = float8[]
);

grant usage on schema udf to market_reader;
grant execute on all functions in schema udf to market_reader;
{% endmacro %}

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
    s      float8[];
    i      integer;
    prev   float8;
    ema_s  float8;
    ema_f  float8;
    macd   float8;
    sig    float8;
    gain   float8;
    loss   float8;
    rsi    float8;
    sig_out float8;
    d      float8;
    m      float8;
    j      integer;
begin
    -- after the warm-up (every EMA and Wilder average seeded): the same operations as below, read
    -- straight from the state without copying it into locals; 25-30 % less time per row on 1.26M
    -- rows, and bit-identical states (compared on all of them). greatest/least(d, 0) add or take 0
    -- where the branches below leave the sum alone: x + 0 = x - 0 = x in IEEE arithmetic.
    if state[1] >= slow + signal - 1 and state[1] > rsi_n then
        ema_s := ((close - state[3]) * (2.0::float8 / (slow + 1))) + state[3];
        ema_f := ((close - state[4]) * (2.0::float8 / (fast + 1))) + state[4];
        sig := (((ema_f - ema_s) - state[6]) * (2.0::float8 / (signal + 1))) + state[6];
        d := close - state[2];
        gain := ((state[7] * (rsi_n - 1)) + greatest(d, 0)) / rsi_n;
        loss := ((state[8] * (rsi_n - 1)) - least(d, 0)) / rsi_n;
        return array[
            state[1] + 1, close, ema_s, ema_f, ema_f - ema_s, sig, gain, loss,
            case
                when gain + loss > -0.00000001 and gain + loss < 0.00000001 then 0
                else 100.0 * (gain / (gain + loss))
            end,
            sig
        ];
    end if;
    s := coalesce(state, seed, array[0, null, 0, 0, null, 0, 0, 0, null, null]::float8[]);
    i := s[1];
    prev := s[2]; ema_s := s[3]; ema_f := s[4]; macd := s[5]; sig := s[6];
    gain := s[7]; loss := s[8]; rsi := s[9]; sig_out := s[10];
    -- warm-up (TA-Lib's seeding): state read into locals once and written back as one array,
    -- twice as fast as element-wise updates of the array (measured on 1.26M rows)

    -- MACD: both EMAs seeded at index slow-1
    if i < slow then
        ema_s := ema_s + close;
        if i >= slow - fast then ema_f := ema_f + close; end if;
        if i = slow - 1 then ema_s := ema_s / slow; ema_f := ema_f / fast; end if;
    else
        ema_s := ((close - ema_s) * (2.0::float8 / (slow + 1))) + ema_s;
        ema_f := ((close - ema_f) * (2.0::float8 / (fast + 1))) + ema_f;
    end if;
    if i >= slow - 1 then
        m := ema_f - ema_s;
        j := i - (slow - 1);
        if j < signal then
            sig := sig + m;
            if j = signal - 1 then sig := sig / signal; end if;
        else
            sig := ((m - sig) * (2.0::float8 / (signal + 1))) + sig;
        end if;
        if j >= signal - 1 then macd := m; sig_out := sig; end if;
    end if;
    -- RSI, Wilder's smoothing, seeded with the plain average of the first rsi_n changes
    if i >= 1 then
        d := close - prev;
        if i <= rsi_n then
            if d < 0 then loss := loss - d; else gain := gain + d; end if;
            if i = rsi_n then loss := loss / rsi_n; gain := gain / rsi_n; end if;
        else
            loss := loss * (rsi_n - 1);
            gain := gain * (rsi_n - 1);
            if d < 0 then loss := loss - d; else gain := gain + d; end if;
            loss := loss / rsi_n;
            gain := gain / rsi_n;
        end if;
        if i >= rsi_n then
            d := gain + loss;
            if d > -0.00000001 and d < 0.00000001 then rsi := 0; else rsi := 100.0 * (gain / d); end if;
        end if;
    end if;
    return array[i + 1, close, ema_s, ema_f, macd, sig, gain, loss, rsi, sig_out];
end
$fn$;
create or replace aggregate udf.ta_recursive(
    close float8, seed float8[], fast integer, slow integer, signal integer, rsi_n integer
) (
    sfunc = udf.ta_recursive_step,
    stype = float8[]
);

-- the reader has SELECT on what it reads and nothing else (V022): no view calls these
revoke all on schema udf from public, market_reader;
revoke all on all functions in schema udf from public, market_reader;
{% endmacro %}

-- The queries over claimed deliveries (`sending`), as functions that run with bitmap scans off.
--
-- Every claim and every report moves a row into or out of the partial index deliveries_leased,
-- whose entries for rows gone from `sending` stay until vacuum: half a million of them while a
-- large mailing runs. A bitmap scan visits each such entry's heap row on every call, so counting
-- the claims or looking for lapsed ones grows with everything ever sent. A plain index scan marks
-- an entry dead the first time it finds its row gone and skips it from then on, so each call costs
-- what changed since the last. The planner, knowing little of a table that changes this fast,
-- picks the bitmap; a function's own setting keeps the rest of the session as it is.
CREATE FUNCTION herald_count_claimed() RETURNS BIGINT LANGUAGE sql STABLE SET enable_bitmapscan = off AS $$
    SELECT count(*) FROM deliveries WHERE status = 'sending'
$$;

CREATE FUNCTION herald_rescue_lapsed(at TIMESTAMPTZ) RETURNS BIGINT LANGUAGE sql VOLATILE
SET enable_bitmapscan = off AS $$
    WITH rescued AS (
        UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = at
        WHERE status = 'sending' AND lease_until < at
        RETURNING 1
    )
    SELECT count(*) FROM rescued
$$;

-- accounts (issue 3): what every other peer last said of its own backfill.
-- RFC 3: a joining peer gets every account before it counts as a full peer,
-- and the others show it as "joining" until then (`centerctl peer list`).
-- Frozen once released: never edit a migration that has shipped.
CREATE TABLE account_peer_backfill (
  peer_uuid   uuid PRIMARY KEY,
  state       text NOT NULL CHECK (state IN ('running', 'done')),
  received    integer NOT NULL DEFAULT 0,
  total       integer NOT NULL DEFAULT 0,
  at          timestamptz NOT NULL             -- the peer's own time of the report: an older one never overwrites a newer
);

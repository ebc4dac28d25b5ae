-- key-rotation (issue 7): `centerctl key rotate`.
-- Frozen once released: never edit a migration that has shipped.

-- Our side: peers that have not yet confirmed our newest OpenPGP key. Frames
-- to them are still signed with the previous key (openpgp.key.prev), which
-- they trust; `announcement` is the signed key-rotation event, kept so a
-- crash before it was queued does not leave them unaware.
CREATE TABLE own_key_rotations (
  peer_uuid     uuid PRIMARY KEY,
  fingerprint   text NOT NULL,
  announcement  text NOT NULL,
  submitted     boolean NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- Their side: a peer's key it replaced, still accepted on its frames until
-- valid_until (seconds since the epoch; limits.max_ttl_seconds after the
-- rotation), so what it signed before the rotation reached us stays good.
CREATE TABLE peer_previous_keys (
  peer_uuid     uuid PRIMARY KEY,
  fingerprint   text NOT NULL,
  public_key    text NOT NULL,
  valid_until   bigint NOT NULL
);

-- Signed peer records (issue 5): a peer's own statement of its address, with
-- a sequence number. One row per peer: our own last announced record, and the
-- newest verified record of each admitted peer (peers.address follows it).
CREATE TABLE peer_records (
  uuid        uuid PRIMARY KEY,
  domain      text NOT NULL,
  address     text NOT NULL,
  seq         bigint NOT NULL,
  sig         text NOT NULL,               -- detached OpenPGP signature, base64
  updated_at  timestamptz NOT NULL DEFAULT now()
);

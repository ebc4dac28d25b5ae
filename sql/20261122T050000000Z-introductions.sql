-- Introductions (RFC 3 "Adding New Peers") and excommunication ("Joining The Network").

-- Peers we have heard of from an admitted peer (its peer table, or its
-- introduction of a newcomer) but not admitted ourselves.
CREATE TABLE peer_candidates (
  uuid           uuid PRIMARY KEY,
  domain         text NOT NULL,
  address        text NOT NULL,
  public_key     text NOT NULL,
  fingerprint    text NOT NULL,
  signal_bundle  jsonb NOT NULL,
  introduced_by  uuid NOT NULL,
  -- heard: known only; greeting: we are sending add-peer-server; greeted: it took it
  state          text NOT NULL DEFAULT 'heard' CHECK (state IN ('heard', 'greeting', 'greeted')),
  attempts       integer NOT NULL DEFAULT 0,
  next_try       timestamptz NOT NULL DEFAULT now(),
  created_at     timestamptz NOT NULL DEFAULT now()
);

-- A join request may come from an introduction instead of a secret file.
ALTER TABLE join_requests ADD COLUMN introduced_by uuid;

-- Peers banned here, why, by whom, and who had sponsored them.
CREATE TABLE bans (
  uuid        uuid PRIMARY KEY,
  reason      text NOT NULL,
  banned_by   uuid NOT NULL,               -- our uuid, or the peer whose notice we applied
  sponsor     uuid,
  state       text NOT NULL DEFAULT 'applied' CHECK (state IN ('applied', 'proposed')),
  created_at  timestamptz NOT NULL DEFAULT now()
);

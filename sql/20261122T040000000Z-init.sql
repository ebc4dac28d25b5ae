-- center: initial schema. Frozen once released: change the schema with a new file.

-- ===== RFC 3 tables, for services =====

-- resources: named things services care about (usernames, service names, ...).
CREATE TABLE resources (
  id          bigserial PRIMARY KEY,
  service     text NOT NULL,              -- owning service; 'center' for the daemon
  kind        text NOT NULL,              -- e.g. 'user', 'service', 'hashtag'
  name        text NOT NULL,
  value       text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (service, kind, name)
);

-- metadata: extra key/value facts attached to a resource.
CREATE TABLE metadata (
  id           bigserial PRIMARY KEY,
  resource_id  bigint NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
  key          text NOT NULL,
  value        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (resource_id, key)
);

-- appdata: a service's own rows, optionally about a resource.
CREATE TABLE appdata (
  id           bigserial PRIMARY KEY,
  service      text NOT NULL,
  resource_id  bigint REFERENCES resources(id) ON DELETE CASCADE,
  key          text NOT NULL,
  value        jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (service, key)
);

-- appmetadata: extra key/value facts attached to an appdata row.
CREATE TABLE appmetadata (
  id          bigserial PRIMARY KEY,
  appdata_id  bigint NOT NULL REFERENCES appdata(id) ON DELETE CASCADE,
  key         text NOT NULL,
  value       text,
  UNIQUE (appdata_id, key)
);

-- tokens: grants from an owning service to another service (or itself) over a
-- resource or appdata row. Only a SHA-256 of the token is stored.
CREATE TABLE tokens (
  id           bigserial PRIMARY KEY,
  token_sha256 bytea NOT NULL UNIQUE,
  owner        text NOT NULL,
  grantee      text NOT NULL,
  resource_id  bigint REFERENCES resources(id) ON DELETE CASCADE,
  appdata_id   bigint REFERENCES appdata(id) ON DELETE CASCADE,
  scope        text NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'write')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz
);

-- ===== the daemon's own tables =====

-- Admitted peers. Only a signed add-peer-server (or our own approval) puts a row here.
CREATE TABLE peers (
  uuid             uuid PRIMARY KEY,
  domain           text NOT NULL,
  address          text NOT NULL,         -- HOST:PORT last known
  fingerprint      text NOT NULL,         -- OpenPGP primary key fingerprint, hex
  public_key       text NOT NULL,         -- armored OpenPGP public key
  signal_identity  bytea NOT NULL,        -- libsignal identity public key (pinned)
  signal_bundle    jsonb NOT NULL,        -- last prekey bundle it gave us (for re-keying)
  state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'banned')),
  admitted_at      timestamptz NOT NULL DEFAULT now(),
  last_seen        timestamptz,
  sponsor          uuid                   -- who introduced it (null: we admitted it)
);

-- One Double Ratchet session record per peer, saved before any frame it produced is sent.
CREATE TABLE ratchet_sessions (
  peer_uuid   uuid PRIMARY KEY,
  record      bytea NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per peer pair counters: the next outgoing sequence number and the highest
-- incoming one accepted (deduplication and ordering).
CREATE TABLE peer_seq (
  peer_uuid    uuid PRIMARY KEY,
  next_out     bigint NOT NULL DEFAULT 1,
  last_in      bigint NOT NULL DEFAULT 0
);

-- Durable outbox: one row per (peer, event) until the peer acknowledges it.
CREATE TABLE outbox (
  peer_uuid   uuid NOT NULL,
  seq         bigint NOT NULL,
  name        text NOT NULL,
  envelope    text NOT NULL,              -- the RFC 3 envelope, JSON
  exp         bigint NOT NULL,            -- seconds since epoch
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (peer_uuid, seq)
);

-- Inbox: accepted events waiting for (or kept for) local services.
CREATE TABLE inbox (
  id           bigserial PRIMARY KEY,
  from_uuid    uuid NOT NULL,
  seq          bigint NOT NULL,           -- sender's sequence number (0 for local)
  name         text NOT NULL,
  envelope     text NOT NULL,
  exp          bigint NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_name_id ON inbox (name, id);

-- Local services and what the sysadmin granted them. Only a SHA-256 of the token is kept.
CREATE TABLE services (
  name          text PRIMARY KEY,
  token_sha256  bytea NOT NULL UNIQUE,
  receive       text[] NOT NULL DEFAULT '{}',
  send          text[] NOT NULL DEFAULT '{}',
  delivered     bigint NOT NULL DEFAULT 0,  -- inbox id up to which the service acknowledged
  state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked', 'banned')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Invitations we issued (RFC 3 secret files). The secret itself is kept: the
-- newcomer proves it by signing it, and checking that signature needs the value.
CREATE TABLE invites (
  secret_file    text PRIMARY KEY,
  admin          text NOT NULL,
  secret         text NOT NULL,
  proofs_needed  integer NOT NULL DEFAULT 1,
  created_at     timestamptz NOT NULL DEFAULT now(),
  used_by        uuid
);

-- new-peer-server requests waiting for the sysadmin, and their proofs.
CREATE TABLE join_requests (
  uuid           uuid PRIMARY KEY,
  domain         text NOT NULL,
  address        text NOT NULL,
  admin          text NOT NULL,
  public_key     text NOT NULL,
  fingerprint    text NOT NULL,
  signal_bundle  jsonb NOT NULL,
  proofs         text[] NOT NULL DEFAULT '{}',   -- secret files proven so far
  proofs_needed  integer NOT NULL DEFAULT 1,
  state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Joins we asked for (we are the newcomer) and their outcome.
CREATE TABLE join_attempts (
  peer_uuid    uuid PRIMARY KEY,
  address      text NOT NULL,
  public_key   text NOT NULL,
  state        text NOT NULL DEFAULT 'sent' CHECK (state IN ('sent', 'accepted')),
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- Nonces of signed control messages (GPG frames) seen, until they expire.
CREATE TABLE seen_nonces (
  nonce  text PRIMARY KEY,
  exp    bigint NOT NULL
);

-- Sends a local service already made, by its own nonce: a send retried after a
-- lost reply (or a crash) is queued once.
CREATE TABLE service_sends (
  service     text NOT NULL,
  nonce       text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (service, nonce)
);

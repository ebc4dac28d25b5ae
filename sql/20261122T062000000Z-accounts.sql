-- Accounts (RFC 3 "User Accounts"): the replicated claim log and per-name state.
-- Frozen once released: never edit a migration that has shipped.

-- One row per user-add event ever seen: (name, origin, created_at) is the
-- claim. Claims are never removed; a deletion or a lost race is a state.
CREATE TABLE accounts (
  name        text COLLATE "C" NOT NULL,     -- byte order, the same as the claim order in code
  origin      uuid NOT NULL,                  -- the peer the user joined from
  created_at  timestamptz NOT NULL,           -- as stamped by the origin peer (ms)
  uid_number  integer,                        -- agreed number; null for a claim that lost its name
  gecos       text NOT NULL DEFAULT '',
  shell       text NOT NULL,
  keys        jsonb NOT NULL,                 -- validated OpenSSH public key lines
  -- active | locked | deleted | lost (an earlier claim owns the name) | blocked (number taken by a local account here)
  state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'locked', 'deleted', 'lost', 'blocked')),
  -- LDAP and /center/users/NAME match this row
  synced      boolean NOT NULL DEFAULT false,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, origin, created_at)
);

CREATE INDEX accounts_claim_order ON accounts (created_at, origin, name);
CREATE UNIQUE INDEX accounts_uid_number ON accounts (uid_number) WHERE uid_number IS NOT NULL;
CREATE INDEX accounts_unsynced ON accounts (name) WHERE NOT synced;

-- user-del: every claim on the name created at or before deleted_at is deleted.
CREATE TABLE account_deletions (
  name        text NOT NULL,
  deleted_at  timestamptz NOT NULL,
  by_peer     uuid NOT NULL,
  PRIMARY KEY (name, deleted_at)
);

-- user-lock / user-unlock: the last one (by time, then peer) wins.
CREATE TABLE account_locks (
  name        text PRIMARY KEY,
  locked      boolean NOT NULL,
  at          timestamptz NOT NULL,
  by_peer     uuid NOT NULL,
  reason      text NOT NULL DEFAULT ''
);

-- user ban --local: only this box refuses the user; never replicated.
CREATE TABLE account_bans (
  name        text PRIMARY KEY,
  reason      text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Backfill of every account from one peer when this peer joins (RFC 3).
CREATE TABLE account_backfill (
  id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  peer        uuid,
  state       text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'running', 'done')),
  cursor      jsonb,                          -- last claim applied, in claim order
  received    integer NOT NULL DEFAULT 0,
  total       integer NOT NULL DEFAULT 0,
  started_at  timestamptz,
  finished_at timestamptz,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- accounts (issue 3): the lock watch compares LDAP's locks with the agreed
-- ones every couple of seconds; this index lets it read only the accounts
-- agreed locked instead of every account (a whole-table read each time,
-- for as long as centerd runs, grows with the network).
-- Frozen once released: never edit a migration that has shipped.
CREATE INDEX accounts_locked ON accounts (name) WHERE state = 'locked';

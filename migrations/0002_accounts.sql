-- samlgate store schema, version 2: local 医療情報ネット ID/password accounts (issue 13).
-- As in 0001, `doc` is the exact JSON the owning module wrote (accounts::account::Account,
-- accounts::reset::ResetTicket); the columns the secretariat queries are generated from it.
-- The PHC hash and the TOTP secret stay inside `doc`: no column copies them.

-- One row per account; user_id is the local user id (users.id): one person is one user.
CREATE TABLE accounts (
  user_id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  role text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'role') STORED,
  disabled text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'disabled') STORED,
  must_change text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'must_change') STORED,
  failures bigint GENERATED ALWAYS AS (samlgate_bigint(samlgate_json(doc) -> 'throttle' -> 'failures')) STORED,
  created text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'created') STORED,
  updated text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'updated') STORED
);

-- Outstanding resets: 'link:<sha-256 of the mailed token>' or 'code:<user id>'. Only hashes.
CREATE TABLE reset_tickets (
  id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  user_id text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'user_id') STORED,
  expires_at bigint GENERATED ALWAYS AS (samlgate_bigint(samlgate_json(doc) -> 'expires_at')) STORED
);
CREATE INDEX reset_tickets_user_id ON reset_tickets (user_id);
CREATE INDEX reset_tickets_expires_at ON reset_tickets (expires_at);

-- ID/password logins between their steps (forced password change, TOTP): the proven state
-- is kept here, server-side, never in a form field.
CREATE TABLE login_steps (
  id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  expires_at bigint GENERATED ALWAYS AS (samlgate_bigint(samlgate_json(doc) -> 'expires')) STORED
);
CREATE INDEX login_steps_expires_at ON login_steps (expires_at);

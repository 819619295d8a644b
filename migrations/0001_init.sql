-- samlgate store schema, version 1. Applied by `samlgate store migrate` in one transaction.
--
-- Records keep the exact JSON the owning module wrote (`doc`, text: guarded writes compare it
-- byte for byte); the columns auditors and the secretariat query are generated from it, so
-- they can never disagree with the record. Keys compare bytewise (COLLATE "C"), as in sled.

-- A JSON parse that yields NULL instead of failing, so a generated column never refuses a
-- write. IMMUTABLE is true: the result depends on the argument only.
CREATE FUNCTION samlgate_json(t text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN t::jsonb;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $$;

CREATE FUNCTION samlgate_bigint(j jsonb) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN (j #>> '{}')::bigint;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $$;

-- Local users of 医療情報ネット (identity::users::User).
CREATE TABLE users (
  id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  gmis_id text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'gmis_id') STORED,
  origin text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'origin') STORED,
  facility_code text GENERATED ALWAYS AS (samlgate_json(doc) -> 'profile' ->> 'facility_code') STORED,
  email text GENERATED ALWAYS AS (samlgate_json(doc) -> 'profile' ->> 'email') STORED,
  created text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'created') STORED,
  updated text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'updated') STORED
);
CREATE INDEX users_gmis_id ON users (gmis_id);

-- G-MIS account id -> local user id (the link).
CREATE TABLE user_links (
  gmis_id text COLLATE "C" PRIMARY KEY,
  user_id text NOT NULL
);
CREATE INDEX user_links_user_id ON user_links (user_id);

-- facility code NUL lowercased mail -> local user id (existing accounts, for linking).
CREATE TABLE user_contacts (
  contact bytea PRIMARY KEY,
  user_id text NOT NULL
);

-- First-login consent per G-MIS account (identity::consent::ConsentState).
CREATE TABLE consents (
  gmis_id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  decision text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'decision') STORED,
  version text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'version') STORED,
  decided_at text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'at') STORED
);

-- SSO applications (identity::applications::Application).
CREATE TABLE applications (
  gmis_id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  status text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'status') STORED,
  link_to text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'link_to') STORED,
  updated text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'updated') STORED
);
CREATE INDEX applications_status ON applications (status);

-- The audit log; seq from audit_seq (Store::next_seq).
CREATE SEQUENCE audit_seq;
CREATE TABLE audit (
  seq bigint PRIMARY KEY,
  doc text NOT NULL,
  at text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'at') STORED,
  actor text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'actor') STORED,
  action text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'action') STORED,
  subject text GENERATED ALWAYS AS (samlgate_json(doc) ->> 'subject') STORED
);
CREATE INDEX audit_subject ON audit (subject);

-- Verified logins waiting for the consent page, and SP-initiated requests in progress.
CREATE TABLE pending_logins (
  id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  expires_at bigint GENERATED ALWAYS AS (samlgate_bigint(samlgate_json(doc) -> 'expires')) STORED
);
CREATE INDEX pending_logins_expires_at ON pending_logins (expires_at);
CREATE TABLE authn_requests (
  id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  expires_at bigint GENERATED ALWAYS AS (samlgate_bigint(samlgate_json(doc) -> 'expires')) STORED
);
CREATE INDEX authn_requests_expires_at ON authn_requests (expires_at);

-- Sessions (store::SessionRecord). Indexed for single logout (NameID) and for ending an
-- account's sessions (block, revoke, unlink); the sweep deletes by expires_at / last_seen.
CREATE TABLE sessions (
  id text COLLATE "C" PRIMARY KEY,
  doc jsonb NOT NULL,
  local_user_id text GENERATED ALWAYS AS (doc ->> 'local_user_id') STORED,
  account_id text GENERATED ALWAYS AS (doc -> 'profile' ->> 'account_id') STORED,
  name_id text GENERATED ALWAYS AS (doc ->> 'name_id') STORED,
  session_index text GENERATED ALWAYS AS (doc ->> 'session_index') STORED,
  created bigint GENERATED ALWAYS AS ((doc ->> 'created')::bigint) STORED,
  last_seen bigint GENERATED ALWAYS AS ((doc ->> 'last_seen')::bigint) STORED,
  expires_at bigint GENERATED ALWAYS AS ((doc ->> 'expires')::bigint) STORED
);
CREATE INDEX sessions_name_id ON sessions (name_id, session_index);
CREATE INDEX sessions_local_user_id ON sessions (local_user_id);
CREATE INDEX sessions_account_id ON sessions (account_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_last_seen ON sessions (last_seen);

-- The replay cache: exactly once across instances by the primary key. kind: 'a' assertion,
-- 'l' LogoutRequest ('' for keys of another shape, kept whole in assertion_id).
CREATE TABLE replay (
  idp text NOT NULL,
  assertion_id text NOT NULL,
  kind text NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (idp, assertion_id, kind)
);
CREATE INDEX replay_expires_at ON replay (expires_at);

-- Secrets the gateway generated for itself (cookie MAC key, ...): shared by all instances.
CREATE TABLE secrets (
  name text PRIMARY KEY,
  value bytea NOT NULL
);

-- Store::generation across instances: bumped (and NOTIFY samlgate_generation sent) in the
-- same transaction as every write that can end or restrict a session.
CREATE TABLE store_generation (
  id integer PRIMARY KEY CHECK (id = 1),
  n bigint NOT NULL
);
INSERT INTO store_generation VALUES (1, 0);

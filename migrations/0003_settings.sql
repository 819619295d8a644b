-- samlgate store schema, version 3: operator settings every instance shares (issue 15).
-- name: 'notice' (the login-page notice), 'idp_trust:<SHA-256 fingerprint>' (an IdP signing
-- certificate accepted with `samlgate idp trust`). doc is the JSON the owning module wrote.
CREATE TABLE settings (
  name text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL
);

-- podcap standalone store, version 1: captures, schedules, files, shares and API tokens.
-- Specs and statuses are stored as the API's JSON, so the schema does not chase the model.

CREATE TABLE captures (
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    uid         TEXT NOT NULL UNIQUE,
    spec        TEXT NOT NULL,
    status      TEXT NOT NULL,
    phase       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    schedule    TEXT,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX captures_by_phase ON captures (phase);

CREATE TABLE schedules (
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    uid         TEXT NOT NULL UNIQUE,
    spec        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE shares (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    capture_uid  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    downloads    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    namespaces  TEXT,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

#include "store/postgres_migrations.h"

namespace drawbridge::store {

const std::vector<std::string>& PostgresMigrations() {
  static const std::vector<std::string> migrations = {
      // 1: identities, their keys, used enrollment token ids, issued certificates
      // (the same state as the SQLite store's schema version 1).
      R"sql(
CREATE TABLE identities(
  identity TEXT PRIMARY KEY,
  enabled BOOLEAN NOT NULL,
  cidrs TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL);
CREATE TABLE keys(
  key_id TEXT PRIMARY KEY,
  identity TEXT NOT NULL REFERENCES identities(identity),
  algorithm TEXT NOT NULL,
  public_key_pem TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  removed_at BIGINT NOT NULL DEFAULT 0);
CREATE INDEX keys_by_identity ON keys(identity);
CREATE TABLE used_token_ids(
  token_id TEXT PRIMARY KEY,
  expires_at BIGINT NOT NULL);
CREATE INDEX used_token_ids_by_expiry ON used_token_ids(expires_at);
CREATE TABLE certificates(
  serial TEXT PRIMARY KEY,
  identity TEXT NOT NULL,
  key_id TEXT NOT NULL,
  not_before BIGINT NOT NULL,
  not_after BIGINT NOT NULL);
)sql",
      // 2: a version every identity or key change increments (in the same
      // transaction, which also sends NOTIFY drawbridge_state), so replicas
      // notice each other's changes by polling one row.
      R"sql(
CREATE TABLE state_version(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version BIGINT NOT NULL);
INSERT INTO state_version(id, version) VALUES (1, 0);
)sql",
      // 3: the policy every replica enforces (admin policy set on any of them).
      R"sql(
CREATE TABLE policy(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  yaml TEXT NOT NULL,
  updated_at BIGINT NOT NULL);
)sql",
      // 4: replica membership (heartbeats stamped with the database's clock).
      R"sql(
CREATE TABLE replicas(
  id TEXT PRIMARY KEY,
  advertise TEXT NOT NULL,
  started_at BIGINT NOT NULL,
  heartbeat_at TIMESTAMPTZ NOT NULL);
)sql",
      // 5: `admin sessions kill` across replicas (requests every replica sees).
      R"sql(
CREATE TABLE session_kills(
  conn_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  requested_at BIGINT NOT NULL,
  done_by TEXT NOT NULL DEFAULT '',
  session_json TEXT NOT NULL DEFAULT '');
)sql",
      // 6: the deployment's CA, which replicas joining later take (its keys
      // sealed under the KEK; the KEK is never stored).
      R"sql(
CREATE TABLE pki_material(
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL);
)sql",
      // 7: the audit trail, one hash chain per replica (audit/shared_audit.h):
      // the chain's audit public key endorsed by the CA, its retention anchor,
      // records, signed checkpoints and signed head.
      R"sql(
CREATE TABLE audit_chains(
  replica_id TEXT PRIMARY KEY,
  public_key_pem TEXT NOT NULL,
  endorser_cert_pem TEXT NOT NULL,
  endorsement TEXT NOT NULL,
  anchor_seq BIGINT NOT NULL DEFAULT 0,
  anchor_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL);
CREATE TABLE audit_records(
  replica_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  time_ms BIGINT NOT NULL,
  class_uid INTEGER NOT NULL,
  class_name TEXT NOT NULL,
  activity TEXT NOT NULL,
  outcome TEXT NOT NULL,
  actor TEXT NOT NULL,
  source_address TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (replica_id, seq));
CREATE INDEX audit_records_by_time ON audit_records(time_ms);
CREATE TABLE audit_checkpoints(
  replica_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (replica_id, seq));
CREATE TABLE audit_heads(
  replica_id TEXT PRIMARY KEY,
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL,
  anchor_seq BIGINT NOT NULL,
  anchor_hash TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  signature TEXT NOT NULL);
)sql",
  };
  return migrations;
}

}  // namespace drawbridge::store

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0012_user_language');
CREATE TABLE artifacts (
	job_id INTEGER NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	size BIGINT NOT NULL, 
	content_type VARCHAR(200) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (job_id, name), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);
CREATE TABLE audit_log (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	at DATETIME NOT NULL, 
	actor VARCHAR(100) NOT NULL, 
	action VARCHAR(100) NOT NULL, 
	target VARCHAR(300) NOT NULL, 
	address VARCHAR(64) NOT NULL, 
	detail JSON
);
CREATE TABLE display_links (
	id INTEGER NOT NULL, 
	dashboard VARCHAR(100) NOT NULL, 
	label VARCHAR(200) NOT NULL, 
	secret_hash VARCHAR(64) NOT NULL, 
	created_by VARCHAR(100) NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME, 
	last_used_at DATETIME, 
	revoked_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (secret_hash)
);
CREATE TABLE engines (
	id VARCHAR(64) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	pid INTEGER NOT NULL, 
	heartbeat_at DATETIME NOT NULL, info JSON, 
	PRIMARY KEY (id)
);
CREATE TABLE job_logs (
	job_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	stream VARCHAR(8) NOT NULL, 
	text TEXT NOT NULL, step VARCHAR(200), 
	PRIMARY KEY (job_id, seq), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);
CREATE TABLE job_steps (
	job_id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	position INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	depends_on JSON NOT NULL, 
	description TEXT NOT NULL, 
	allow_failure BOOLEAN DEFAULT 0 NOT NULL, 
	parent VARCHAR(200), 
	started_at DATETIME, 
	finished_at DATETIME, 
	progress FLOAT, 
	message TEXT, 
	output JSON, 
	error TEXT, 
	artifacts JSON NOT NULL, 
	reused BOOLEAN DEFAULT 0 NOT NULL, 
	PRIMARY KEY (job_id, name), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);
CREATE TABLE job_uploads (
	job_id INTEGER NOT NULL, 
	upload_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (job_id, upload_id), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE, 
	FOREIGN KEY(upload_id) REFERENCES uploads (upload_id)
);
CREATE TABLE jobs (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	task VARCHAR(200) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	params JSON NOT NULL, 
	owner VARCHAR(200), 
	priority INTEGER DEFAULT '0' NOT NULL, 
	queue VARCHAR(100) DEFAULT 'default' NOT NULL, 
	idempotency_key VARCHAR(200), 
	attempts INTEGER DEFAULT '0' NOT NULL, 
	max_attempts INTEGER DEFAULT '1' NOT NULL, 
	run_after DATETIME, 
	created_at DATETIME NOT NULL, 
	started_at DATETIME, 
	finished_at DATETIME, 
	progress FLOAT, 
	message TEXT, 
	result JSON, 
	error TEXT, 
	traceback TEXT, 
	worker VARCHAR(200), 
	engine_id VARCHAR(64), 
	cancel_requested BOOLEAN DEFAULT 0 NOT NULL, 
	log_lines INTEGER DEFAULT '0' NOT NULL, 
	schedule VARCHAR(200)
);
CREATE TABLE login_attempts (
	id INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	address VARCHAR(64) NOT NULL, 
	started_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE notify_deliveries (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	rule_id INTEGER NOT NULL, 
	"key" VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	test BOOLEAN DEFAULT 0 NOT NULL, 
	created_at DATETIME NOT NULL, 
	due_at DATETIME NOT NULL, 
	lease_until DATETIME, 
	attempts INTEGER DEFAULT '0' NOT NULL, 
	events INTEGER DEFAULT '0' NOT NULL, 
	sent_at DATETIME, 
	last_error TEXT, 
	FOREIGN KEY(rule_id) REFERENCES notify_rules (id) ON DELETE CASCADE, 
	UNIQUE ("key")
);
CREATE TABLE notify_events (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	kind VARCHAR(32) NOT NULL, 
	"key" VARCHAR(300) NOT NULL, 
	at DATETIME NOT NULL, 
	job_id INTEGER, 
	task VARCHAR(200), 
	subject VARCHAR(200) NOT NULL, 
	message TEXT, 
	routed BOOLEAN DEFAULT 0 NOT NULL, 
	UNIQUE ("key")
);
CREATE TABLE notify_items (
	rule_id INTEGER NOT NULL, 
	event_id INTEGER NOT NULL, 
	delivery_id INTEGER NOT NULL, 
	PRIMARY KEY (rule_id, event_id), 
	FOREIGN KEY(rule_id) REFERENCES notify_rules (id) ON DELETE CASCADE, 
	FOREIGN KEY(event_id) REFERENCES notify_events (id) ON DELETE CASCADE, 
	FOREIGN KEY(delivery_id) REFERENCES notify_deliveries (id) ON DELETE CASCADE
);
CREATE TABLE notify_rules (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	name VARCHAR(200) NOT NULL, 
	origin VARCHAR(16) NOT NULL, 
	owner VARCHAR(100), 
	events VARCHAR(500) NOT NULL, 
	scope JSON NOT NULL, 
	target TEXT NOT NULL, 
	secret VARCHAR(200), 
	longer_than FLOAT, 
	enabled BOOLEAN DEFAULT 1 NOT NULL, 
	created_by VARCHAR(100) NOT NULL, 
	created_at DATETIME NOT NULL, 
	UNIQUE (name)
);
CREATE TABLE pool_events (
	id INTEGER NOT NULL, 
	pool VARCHAR(200) NOT NULL, 
	at DATETIME NOT NULL, 
	from_state VARCHAR(16), 
	to_state VARCHAR(16) NOT NULL, 
	reason TEXT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE pools (
	name VARCHAR(200) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	changed_at DATETIME NOT NULL, 
	message TEXT, 
	busy_at DATETIME, 
	PRIMARY KEY (name)
);
CREATE TABLE presence (
	user_name VARCHAR(100) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	address VARCHAR(64) NOT NULL, 
	page VARCHAR(300) NOT NULL, 
	PRIMARY KEY (user_name)
);
CREATE TABLE schedules (
	name VARCHAR(200) NOT NULL, 
	next_run_at DATETIME NOT NULL, 
	last_run_at DATETIME, 
	last_job_id INTEGER, 
	PRIMARY KEY (name)
);
CREATE TABLE sessions (
	id_hash VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	csrf VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	address VARCHAR(64), 
	PRIMARY KEY (id_hash), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE sso_subjects (
	provider VARCHAR(40) NOT NULL, 
	subject VARCHAR(255) NOT NULL, 
	user_id INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (provider, subject), 
	CONSTRAINT uq_sso_subjects_user UNIQUE (provider, user_id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE stream_batches (
	id INTEGER NOT NULL, 
	stream VARCHAR(200) NOT NULL, 
	epoch VARCHAR(32) NOT NULL, 
	first_seq BIGINT NOT NULL, 
	last_seq BIGINT NOT NULL, 
	saved_at DATETIME NOT NULL, 
	points JSON NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE tokens (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	secret_hash VARCHAR(64) NOT NULL, 
	hint VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME, 
	last_used_at DATETIME, 
	revoked_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
	UNIQUE (secret_hash)
);
CREATE TABLE uploads (
	upload_id VARCHAR(64) NOT NULL, 
	owner VARCHAR(200), 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (upload_id)
);
CREATE TABLE users (
	id INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	password_hash VARCHAR(255), 
	created_at DATETIME NOT NULL, source VARCHAR(16) DEFAULT 'local' NOT NULL, groups JSON, synced_at DATETIME, display_name VARCHAR(200), language VARCHAR(16), 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE INDEX ix_jobs_active ON jobs (status, priority, id) WHERE status IN ('queued', 'running');
CREATE INDEX ix_jobs_task ON jobs (task, id);
CREATE INDEX ix_jobs_owner ON jobs (owner) WHERE owner IS NOT NULL;
CREATE INDEX ix_job_logs_step ON job_logs (job_id, step, seq) WHERE step IS NOT NULL;
CREATE INDEX ix_jobs_finished_at ON jobs (finished_at);
CREATE INDEX ix_pool_events_pool ON pool_events (pool, id);
CREATE INDEX ix_tokens_user ON tokens (user_id);
CREATE INDEX ix_sessions_user ON sessions (user_id);
CREATE INDEX ix_audit_log_action ON audit_log (action, at);
CREATE INDEX ix_audit_log_actor ON audit_log (actor, at);
CREATE UNIQUE INDEX ix_jobs_owner_key ON jobs (owner, task, idempotency_key) WHERE idempotency_key IS NOT NULL AND owner IS NOT NULL;
CREATE UNIQUE INDEX ix_jobs_open_key ON jobs (task, idempotency_key) WHERE idempotency_key IS NOT NULL AND owner IS NULL;
CREATE INDEX ix_job_uploads_upload ON job_uploads (upload_id);
CREATE INDEX ix_stream_batches_stream ON stream_batches (stream, id);
CREATE INDEX ix_notify_events_unrouted ON notify_events (id) WHERE NOT routed;
CREATE INDEX ix_notify_deliveries_rule ON notify_deliveries (rule_id, id);
CREATE INDEX ix_notify_deliveries_status ON notify_deliveries (status, due_at);
CREATE INDEX ix_notify_items_delivery ON notify_items (delivery_id);
CREATE TRIGGER notify_job_end AFTER UPDATE OF status ON jobs
    WHEN NEW.status IN ('failed', 'succeeded') AND OLD.status <> NEW.status
     AND EXISTS (SELECT 1 FROM notify_rules WHERE enabled AND instr(events, ',' || 'job.' || NEW.status || ',') > 0)
    BEGIN
      INSERT OR IGNORE INTO notify_events (kind, key, at, job_id, task, subject, message, routed)
      VALUES ('job.' || NEW.status, 'job.' || NEW.status || ':' || NEW.id || ':' || NEW.attempts, strftime('%Y-%m-%d %H:%M:%f', 'now') || '000',
              NEW.id, NEW.task, NEW.task, substr(NEW.error, 1, 2000), 0);
    END;
CREATE TRIGGER notify_job_retry AFTER UPDATE OF status ON jobs
    WHEN NEW.status = 'queued' AND OLD.status = 'running' AND NEW.attempts + 1 = NEW.max_attempts
     AND EXISTS (SELECT 1 FROM notify_rules WHERE enabled AND instr(events, ',' || 'job.last_retry' || ',') > 0)
    BEGIN
      INSERT OR IGNORE INTO notify_events (kind, key, at, job_id, task, subject, message, routed)
      VALUES ('job.last_retry', 'job.last_retry:' || NEW.id || ':' || NEW.attempts, strftime('%Y-%m-%d %H:%M:%f', 'now') || '000',
              NEW.id, NEW.task, NEW.task, substr(NEW.error, 1, 2000), 0);
    END;
CREATE TRIGGER notify_pool AFTER INSERT ON pool_events
    WHEN NEW.from_state IS NOT NULL AND NEW.to_state IN ('running', 'stopped')
     AND EXISTS (SELECT 1 FROM notify_rules WHERE enabled AND instr(events, ',' || CASE NEW.to_state WHEN 'running' THEN 'pool.started' ELSE 'pool.stopped' END || ',') > 0)
    BEGIN
      INSERT OR IGNORE INTO notify_events (kind, key, at, subject, message, routed)
      VALUES (CASE NEW.to_state WHEN 'running' THEN 'pool.started' ELSE 'pool.stopped' END, 'pool:' || NEW.id,
              strftime('%Y-%m-%d %H:%M:%f', 'now') || '000', NEW.pool, substr(NEW.reason, 1, 2000), 0);
    END;
DELETE FROM "sqlite_sequence";

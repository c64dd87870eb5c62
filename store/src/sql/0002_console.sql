-- pantau store, version 2: what the dashboard API keeps. Users and their sessions, the dispatch
-- state of incident events and the audit trail of every action. Plain tables on both engines:
-- they are small and updated in place.

create table {schema}.users (
  name text primary key,
  role text not null check (role in ('operator', 'dispatcher', 'planner', 'admin')),
  password_hash text not null,
  created_at timestamptz not null default now(),
  disabled boolean not null default false
);

-- Only a SHA-256 of each session token is stored: a leaked table does not log anyone in.
create table {schema}.sessions (
  token_sha256 text primary key,
  user_name text not null references {schema}.users (name) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index on {schema}.sessions (expires_at);

-- Dispatch state of an event; an alert without a row here is `new`.
create table {schema}.incidents (
  event_id text primary key,
  camera text not null,
  captured_at timestamptz not null,
  state text not null check (state in ('new', 'acknowledged', 'assigned', 'escalated', 'closed')),
  assignee text,
  escalations int not null default 0,
  updated_at timestamptz not null,
  updated_by text not null
);
create index on {schema}.incidents (state, updated_at desc);

create table {schema}.audit (
  seq bigserial primary key,
  at timestamptz not null default now(),
  actor text not null,
  action text not null,
  target text not null,
  detail jsonb not null default '{}'::jsonb
);
create index on {schema}.audit (target, seq);

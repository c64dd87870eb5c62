-- pantau store, version 6: citizen reports. Integrations (citizen apps) and their keys, the
-- reports they sent, the status callbacks owed to them, and links between events that are one
-- incident (a report and the camera alert of the same thing). Plain tables on both engines.
-- Version 5 is the evidence clips' table; the versions are independent of each other.

-- Only a SHA-256 of each key is stored, and its first characters to tell keys apart. The
-- callback secret signs callbacks (HMAC), so it is kept as it is; it is shown once, like the key.
create table {schema}.integrations (
  name text primary key,
  key_sha256 text not null unique,
  key_prefix text not null,
  callback_url text,
  callback_secret text not null,
  created_by text not null,
  created_at timestamptz not null default now(),
  disabled boolean not null default false
);

-- A report's id is the id of its citizen_report event. The same (source, external_id) twice
-- is one report.
create table {schema}.reports (
  id text primary key,
  source text not null references {schema}.integrations (name),
  external_id text not null,
  category text not null,
  text text not null,
  reported_at timestamptz not null,
  latitude double precision not null,
  longitude double precision not null,
  photos text[] not null default '{}',
  cameras jsonb not null default '[]'::jsonb,
  received_at timestamptz not null default now(),
  -- Callbacks made so far: the next one's sequence number is this plus one.
  callbacks int not null default 0,
  unique (source, external_id)
);

-- Callbacks owed to the source: written in the same statement as the dispatch change they
-- report, delivered in sequence per report until the source answers 2xx.
create table {schema}.report_callbacks (
  id bigserial primary key,
  report_id text not null references {schema}.reports (id),
  seq int not null,
  payload jsonb not null,
  created_at timestamptz not null default now(),
  attempts int not null default 0,
  next_attempt_at timestamptz not null default now(),
  delivered_at timestamptz,
  dead_at timestamptz,
  last_error text,
  unique (report_id, seq)
);
create index on {schema}.report_callbacks (next_attempt_at)
  where delivered_at is null and dead_at is null;

-- Two events that are one incident. Stored once, the smaller id first.
create table {schema}.incident_links (
  event_a text not null,
  event_b text not null,
  linked_by text not null,
  linked_at timestamptz not null default now(),
  primary key (event_a, event_b),
  check (event_a < event_b)
);
create index on {schema}.incident_links (event_b);

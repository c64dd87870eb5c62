-- pantau store, version 1. {schema} and {partition} are filled in by pantau: on plain
-- PostgreSQL the time-series tables are range-partitioned by `at`; with TimescaleDB they become
-- hypertables. Primary keys include `at` (required by both) and the event id (idempotent writes).

create table {schema}.events (
  id text not null,
  at timestamptz not null,
  camera text not null,
  site text not null,
  rule text not null,
  kind text not null,
  class text,
  payload jsonb not null,
  primary key (at, id)
) {partition};
create index on {schema}.events (camera, at desc);

create table {schema}.counts (
  id text not null,
  at timestamptz not null,
  camera text not null,
  line text not null,
  class text not null,
  direction text not null,
  period_s int not null,
  n bigint not null,
  primary key (at, id, class, direction)
) {partition};

create table {schema}.camera_status (
  id text not null,
  at timestamptz not null,
  camera text not null,
  state text not null,
  problem text,
  message text,
  primary key (at, id)
) {partition};

create table {schema}.track_summaries (
  id text not null,
  at timestamptz not null,
  camera text not null,
  track_id bigint not null,
  class text not null,
  last_seen timestamptz not null,
  frames int not null,
  primary key (at, id)
) {partition};

-- Rollups of counts. On plain PostgreSQL pantau adds to them in the same transaction as the
-- rows; with TimescaleDB these are replaced by continuous aggregates in a later migration.
create table {schema}.counts_5m (
  bucket timestamptz not null, camera text not null, line text not null,
  class text not null, direction text not null, n bigint not null,
  primary key (bucket, camera, line, class, direction));
create table {schema}.counts_1h (like {schema}.counts_5m including all);
create table {schema}.counts_1d (like {schema}.counts_5m including all);

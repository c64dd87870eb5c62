-- pantau store, version 4: rules an operator snoozed on a camera. Until `until`, that rule's
-- alerts on that camera are marked snoozed (stored and published, but quiet on the wall).
-- A snooze ends by itself; ended ones stay here as history until pruned with the audit trail.

create table {schema}.snoozes (
  camera text not null,
  rule text not null,
  until timestamptz not null,
  by_user text not null,
  note text,
  created_at timestamptz not null default now(),
  primary key (camera, rule)
);

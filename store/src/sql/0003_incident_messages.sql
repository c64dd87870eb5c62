-- pantau store, version 3: a dispatch action's MQTT message is written in the same statement as
-- the action, and removed once it is in the node's outbox. A crash between the two leaves the
-- message here, and the node appends it at its next start: an action is never stored without
-- its message.

create table {schema}.incident_messages (
  id bigserial primary key,
  created_at timestamptz not null default now(),
  payload jsonb not null
);

-- pantau store, version 5: evidence clips a dispatcher marked "keep". Retention never deletes
-- them; the clip itself (MP4, manifest, signature) is a folder on the node that recorded it.

create table {schema}.evidence_keep (
  clip text primary key,
  event_id text not null,
  kept_by text not null,
  kept_at timestamptz not null default now()
);

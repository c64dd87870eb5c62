-- pantau store, version 5: evidence clips a dispatcher marked "keep". Retention never deletes
-- them; the clip itself (MP4, manifest, signature) is a folder on the node that recorded it.

-- One row per (clip, event): events that share a clip keep it each on their own, and
-- releasing it from one incident leaves the others' marks.
create table {schema}.evidence_keep (
  clip text not null,
  event_id text not null,
  kept_by text not null,
  kept_at timestamptz not null default now(),
  primary key (clip, event_id)
);

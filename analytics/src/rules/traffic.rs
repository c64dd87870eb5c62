//! Traffic and incident rules over tracks: ground speed and `speeding`, `wrong_way`,
//! `stopped_vehicle`, `box_blocked`, `person_on_carriageway`, `loitering`, `crowding` and
//! `crowd_surge`; with a calibration also `queue` and `congestion` per lane and `sudden_stop`.
//!
//! Every rule works in seconds from the frames' capture times, so it holds at any analysis
//! rate. Distances and speeds are metres on the ground when the camera has a calibration
//! ([`GroundPlane`]); rules that only need "moving or not" and "which way" fall back to box
//! heights without one. Lasting situations have `new`, `update` (every [`UPDATE_EVERY_S`]) and
//! `end`; one-off facts (`speeding`, `wrong_way`) come once per track.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use pantau_config::traffic::{CalibrationConfig, LaneConfig, RulesConfig, ZoneKind};
use pantau_config::ZoneConfig;
use serde::Serialize;
use serde_json::Value;

use crate::calibration::GroundPlane;
use crate::geometry::{polygon_contains, Point};

/// Seconds between `update`s of a lasting situation.
pub const UPDATE_EVERY_S: f64 = 10.0;

/// A lane holding vehicles less than this share of the time has free traffic, however slow.
const MIN_OCCUPANCY: f64 = 0.2;

/// Seconds a crowd must stay below its limit before `crowding` ends (no flapping).
const CROWD_END_S: f64 = 3.0;

/// The rule an event comes from; the names are the events' `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficKind {
    Speeding,
    WrongWay,
    StoppedVehicle,
    BoxBlocked,
    PersonOnCarriageway,
    Loitering,
    Crowding,
    CrowdSurge,
    Queue,
    Congestion,
    SuddenStop,
}

/// Where a lasting situation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Single,
    New,
    Update,
    End,
}

/// One fact of the traffic rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficEvent {
    pub kind: TrafficKind,
    pub phase: Phase,
    /// The lane or zone.
    pub rule: String,
    /// The object it is about (crowding is about many).
    pub track_id: Option<u64>,
    pub class: Option<u16>,
    /// Alerts (warning) or facts (info).
    pub alert: bool,
    /// Rule-specific figures: speed, limit, duration, count, ...
    pub details: BTreeMap<String, Value>,
}

/// What the rules need to know about a camera.
#[derive(Debug, Clone, Default)]
pub struct TrafficSetup {
    pub calibration: Option<CalibrationConfig>,
    pub lanes: Vec<LaneConfig>,
    pub zones: Vec<ZoneConfig>,
    pub rules: RulesConfig,
    /// Classes that are vehicles (car, motorcycle, bus, truck, bicycle).
    pub vehicles: HashSet<u16>,
    /// The person class, if the detector has one.
    pub person: Option<u16>,
}

impl TrafficSetup {
    /// The setup of a camera whose detector knows `labels` (vehicles: bicycle, car,
    /// motorcycle, bus, truck; persons: person).
    pub fn new(
        calibration: Option<CalibrationConfig>,
        lanes: Vec<LaneConfig>,
        zones: Vec<ZoneConfig>,
        rules: RulesConfig,
        labels: &[String],
    ) -> Self {
        let index = |name: &str| labels.iter().position(|l| l == name).map(|i| i as u16);
        Self {
            calibration,
            lanes,
            zones,
            rules,
            vehicles: ["bicycle", "car", "motorcycle", "bus", "truck"]
                .into_iter()
                .filter_map(index)
                .collect(),
            person: index("person"),
        }
    }

    /// The setup of a configured camera.
    pub fn for_camera(camera: &pantau_config::CameraSettings, labels: &[String]) -> Self {
        Self::new(
            camera.calibration.clone(),
            camera.lanes.clone(),
            camera.zones.clone(),
            camera.rules.clone(),
            labels,
        )
    }
}

#[derive(Debug)]
struct Lane {
    config: LaneConfig,
    polygon: Vec<Point>,
    /// Unit direction of travel: on the ground with a calibration, else in the image.
    along: [f64; 2],
}

#[derive(Debug)]
struct Area {
    config: ZoneConfig,
    polygon: Vec<Point>,
    area_m2: Option<f64>,
}

/// A situation that lasts: since when, and when it was last reported.
#[derive(Debug, Clone, Copy)]
struct Open {
    since: f64,
    reported: Option<f64>,
}

#[derive(Debug, Default)]
struct TrackState {
    class: u16,
    /// (time, anchor, box height), oldest first.
    history: VecDeque<(f64, Point, f32)>,
    moved: bool,
    stationary_since: Option<f64>,
    speed_kmh: Option<f64>,
    speeding_sent: bool,
    wrong_way_sent: bool,
    /// The last time it went faster than `sudden_stop_from_kmh`.
    fast_at: Option<f64>,
    /// When and where (ground) it came to a stand soon after going fast.
    halted: Option<(f64, [f64; 2])>,
    sudden_reported: bool,
    /// Its last smoothed state: (stationary, ground position).
    last: Option<(bool, Option<[f64; 2]>)>,
    /// Lasting situations of this track by (rule, lane or zone).
    open: HashMap<(TrafficKind, String), Open>,
}

#[derive(Debug, Default)]
struct Crowd {
    open: Option<Open>,
    below_since: Option<f64>,
    /// (time, persons), the last minute.
    counts: VecDeque<(f64, usize)>,
    surge_at: Option<f64>,
}

/// Congestion level of a lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    Free,
    Heavy,
    Congested,
    StopAndGo,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Free => "free",
            Level::Heavy => "heavy",
            Level::Congested => "congested",
            Level::StopAndGo => "stop_and_go",
        }
    }
}

/// What a lane saw since its last report.
#[derive(Debug, Default)]
struct LaneWatch {
    /// (speed km/h, stationary) of each vehicle sighting in the lane.
    sightings: Vec<(f64, bool)>,
    /// Frames seen, and frames with a vehicle in the lane.
    frames: u32,
    occupied: u32,
    /// Vehicles that went from standing to moving or back.
    switches: u32,
    reported: Option<f64>,
    level: Level,
}

/// One camera's traffic rules.
#[derive(Debug)]
pub struct TrafficRules {
    setup: TrafficSetup,
    ground: Option<GroundPlane>,
    lanes: Vec<Lane>,
    areas: Vec<Area>,
    tracks: HashMap<u64, TrackState>,
    crowds: HashMap<String, Crowd>,
    watches: Vec<LaneWatch>,
    keep_s: f64,
}

impl TrafficRules {
    /// The rules of a camera; `None` when none of them applies (no lanes and no zone that
    /// asks for one).
    pub fn new(setup: TrafficSetup) -> Option<Self> {
        let applies = !setup.lanes.is_empty()
            || setup.zones.iter().any(|z| {
                z.kind != ZoneKind::Watch
                    || z.max_persons.is_some()
                    || z.max_density.is_some()
                    || z.loitering_s.is_some()
            });
        if !applies {
            return None;
        }
        let ground = match setup.calibration.as_ref().map(GroundPlane::fit) {
            Some(Ok(g)) => Some(g),
            Some(Err(e)) => {
                tracing::warn!("calibration not used: {e}; speeds and densities are off");
                None
            }
            None => None,
        };
        let points = |p: &[[f32; 2]]| p.iter().map(|[x, y]| Point::new(*x, *y)).collect();
        let lanes = setup
            .lanes
            .iter()
            .map(|l| {
                let (tail, head) = (
                    Point::new(l.direction[0][0], l.direction[0][1]),
                    Point::new(l.direction[1][0], l.direction[1][1]),
                );
                let along = match ground
                    .as_ref()
                    .and_then(|g| Some((g.to_ground(tail)?, g.to_ground(head)?)))
                {
                    Some((a, b)) => unit([b[0] - a[0], b[1] - a[1]]),
                    None => unit([f64::from(head.x - tail.x), f64::from(head.y - tail.y)]),
                };
                Lane {
                    config: l.clone(),
                    polygon: points(&l.polygon),
                    along,
                }
            })
            .collect();
        let areas = setup
            .zones
            .iter()
            .map(|z| {
                let polygon: Vec<Point> = points(&z.polygon);
                Area {
                    area_m2: ground.as_ref().and_then(|g| g.area(&polygon)),
                    config: z.clone(),
                    polygon,
                }
            })
            .collect();
        let r = &setup.rules;
        let keep_s = r.speed_window_s.max(r.wrong_way_s) + 1.0;
        Some(Self {
            ground,
            lanes,
            areas,
            tracks: HashMap::new(),
            crowds: HashMap::new(),
            watches: setup.lanes.iter().map(|_| LaneWatch::default()).collect(),
            keep_s,
            setup,
        })
    }

    /// The lanes as configured, with their polygons.
    pub fn lanes(&self) -> impl Iterator<Item = (&LaneConfig, &[Point])> {
        self.lanes.iter().map(|l| (&l.config, l.polygon.as_slice()))
    }

    /// A track's smoothed ground speed in km/h, when known (needs a calibration).
    pub fn speed_kmh(&self, track_id: u64) -> Option<f64> {
        self.tracks.get(&track_id).and_then(|t| t.speed_kmh)
    }

    /// Feeds one matched track's anchor (bottom centre) and box height at `t` seconds.
    pub fn observe(
        &mut self,
        track_id: u64,
        class: u16,
        anchor: Point,
        height: f32,
        t: f64,
    ) -> Vec<TrafficEvent> {
        let mut out = Vec::new();
        let keep_s = self.keep_s;
        let state = self.tracks.entry(track_id).or_default();
        state.class = class;
        if state.history.back().is_some_and(|(last, _, _)| *last >= t) {
            return out;
        }
        state.history.push_back((t, anchor, height));
        while state
            .history
            .front()
            .is_some_and(|(t0, _, _)| t - t0 > keep_s)
        {
            state.history.pop_front();
        }
        let is_vehicle = self.setup.vehicles.contains(&class);
        let is_person = self.setup.person == Some(class);
        let r = &self.setup.rules;
        let motion = Motion::over(&state.history, r.speed_window_s, self.ground.as_ref());
        state.speed_kmh = motion.and_then(|m| m.kmh);
        let lane = self
            .lanes
            .iter()
            .position(|l| polygon_contains(&l.polygon, anchor));
        let zones_here: Vec<usize> = (0..self.areas.len())
            .filter(|&i| polygon_contains(&self.areas[i].polygon, anchor))
            .collect();
        let in_kind = |k: ZoneKind| {
            zones_here
                .iter()
                .find(|&&i| self.areas[i].config.kind == k)
                .map(|&i| self.areas[i].config.name.clone())
        };

        if is_vehicle {
            // Moving or standing, judged over the speed window.
            let stationary = motion.map(|m| m.stationary(r));
            match stationary {
                Some(true) => {
                    state.stationary_since.get_or_insert(t);
                }
                // Between stationary and clearly moving nothing changes (no flapping).
                Some(false) if motion.is_some_and(|m| m.moving(r)) => {
                    state.moved = true;
                    state.stationary_since = None;
                }
                _ => {}
            }
            // Going fast, then standing within seconds: a candidate for a sudden stop.
            let here = self.ground.as_ref().and_then(|g| g.to_ground(anchor));
            if state.speed_kmh.is_some_and(|k| k > r.sudden_stop_from_kmh) {
                state.fast_at = Some(t);
                state.halted = None;
            }
            if stationary == Some(true) && state.halted.is_none() {
                if let (Some(fast), Some(g)) = (state.fast_at, here) {
                    if t - fast <= r.sudden_stop_s + r.speed_window_s {
                        state.halted = Some((t, g));
                    }
                }
            }
            if let Some(stationary) = stationary {
                // Congestion is about traffic: a vehicle parked since it was first seen is not.
                let watch = lane
                    .filter(|_| state.moved)
                    .and_then(|i| self.watches.get_mut(i));
                if let Some(watch) = watch {
                    if let Some((was, _)) = state.last {
                        if was != stationary {
                            watch.switches += 1;
                        }
                    }
                    watch
                        .sightings
                        .push((state.speed_kmh.unwrap_or(0.0), stationary));
                }
                state.last = Some((stationary, here));
            }
            if let (Some(i), Some(m)) = (lane, motion) {
                let l = &self.lanes[i];
                // Speeding: once per track, on the smoothed speed.
                if let (Some(limit), Some(kmh)) = (l.config.speed_limit_kmh, m.kmh) {
                    if !state.speeding_sent && kmh > limit + r.speeding_margin_kmh {
                        state.speeding_sent = true;
                        out.push(event(
                            TrafficKind::Speeding,
                            Phase::Single,
                            &l.config.name,
                            track_id,
                            class,
                            [
                                ("speed_kmh", round1(kmh)),
                                ("limit_kmh", Value::from(limit)),
                            ],
                        ));
                    }
                }
            }
            if let Some(i) = lane {
                if !state.wrong_way_sent {
                    if let Some(back) = Motion::against(
                        &state.history,
                        r.wrong_way_s,
                        self.lanes[i].along,
                        self.ground.as_ref(),
                    ) {
                        if back >= r.wrong_way_distance {
                            state.wrong_way_sent = true;
                            let unit = if self.ground.is_some() {
                                "distance_m"
                            } else {
                                "distance_box_heights"
                            };
                            out.push(event(
                                TrafficKind::WrongWay,
                                Phase::Single,
                                &self.lanes[i].config.name,
                                track_id,
                                class,
                                [
                                    (unit, round1(back)),
                                    ("seconds", Value::from(r.wrong_way_s)),
                                ],
                            ));
                        }
                    }
                }
            }
            // Standing where it must not: only a vehicle seen moving before (one parked
            // since the camera started never alerts), never in a parking zone.
            let parking = in_kind(ZoneKind::Parking).is_some();
            let no_stopping_place = in_kind(ZoneKind::NoStopping).or_else(|| {
                lane.filter(|&i| !self.lanes[i].config.stopping)
                    .map(|i| self.lanes[i].config.name.clone())
            });
            let standing = state.moved.then_some(state.stationary_since).flatten();
            let stopped_at = no_stopping_place.filter(|_| !parking);
            lasting(
                &mut out,
                state,
                TrafficKind::StoppedVehicle,
                standing.zip(stopped_at),
                r.stopped_s,
                t,
                track_id,
            );
            let boxed = in_kind(ZoneKind::BoxJunction);
            lasting(
                &mut out,
                state,
                TrafficKind::BoxBlocked,
                standing.zip(boxed),
                r.box_blocked_s,
                t,
                track_id,
            );
        }
        if is_person {
            // One situation while the person stays on the road, across lanes: it keeps the
            // lane where it began.
            let begun = state
                .open
                .keys()
                .find(|(k, _)| *k == TrafficKind::PersonOnCarriageway)
                .map(|(_, place)| place.clone());
            let on_road = lane
                .filter(|_| in_kind(ZoneKind::Crossing).is_none())
                .map(|i| begun.unwrap_or_else(|| self.lanes[i].config.name.clone()));
            let since = state
                .open
                .get(&(
                    TrafficKind::PersonOnCarriageway,
                    on_road.clone().unwrap_or_default(),
                ))
                .map_or(t, |o| o.since);
            lasting(
                &mut out,
                state,
                TrafficKind::PersonOnCarriageway,
                on_road.map(|l| (since, l)),
                r.person_on_carriageway_s,
                t,
                track_id,
            );
            // Loitering: one open situation per zone the person dwells in.
            for &i in &zones_here {
                if let Some(limit) = self.areas[i].config.loitering_s {
                    let name = self.areas[i].config.name.clone();
                    let since = state
                        .open
                        .get(&(TrafficKind::Loitering, name.clone()))
                        .map_or(t, |o| o.since);
                    lasting(
                        &mut out,
                        state,
                        TrafficKind::Loitering,
                        Some((since, name)),
                        limit,
                        t,
                        track_id,
                    );
                }
            }
            let here: HashSet<String> = zones_here
                .iter()
                .map(|&i| self.areas[i].config.name.clone())
                .collect();
            close_where(
                &mut out,
                state,
                TrafficKind::Loitering,
                track_id,
                t,
                |name| !here.contains(name),
            );
        }
        out
    }

    /// After a frame's tracks: crowds counted, and what ended for tracks that are gone.
    pub fn frame_done(&mut self, live: &HashSet<u64>, t: f64) -> Vec<TrafficEvent> {
        let mut out = Vec::new();
        let gone: Vec<u64> = self
            .tracks
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut state) = self.tracks.remove(&id) {
                close_where(
                    &mut out,
                    &mut state,
                    TrafficKind::StoppedVehicle,
                    id,
                    t,
                    |_| true,
                );
                close_where(&mut out, &mut state, TrafficKind::BoxBlocked, id, t, |_| {
                    true
                });
                close_where(
                    &mut out,
                    &mut state,
                    TrafficKind::PersonOnCarriageway,
                    id,
                    t,
                    |_| true,
                );
                close_where(&mut out, &mut state, TrafficKind::Loitering, id, t, |_| {
                    true
                });
            }
        }
        self.lanes_done(&mut out, t);
        self.sudden_stops(&mut out, t);
        let Some(person) = self.setup.person else {
            return out;
        };
        for area in &self.areas {
            let z = &area.config;
            if z.max_persons.is_none() && z.max_density.is_none() {
                continue;
            }
            let count = self
                .tracks
                .values()
                .filter(|s| s.class == person)
                .filter(|s| {
                    s.history.back().is_some_and(|(last, p, _)| {
                        *last >= t && polygon_contains(&area.polygon, *p)
                    })
                })
                .count();
            let density = area.area_m2.filter(|a| *a > 0.0).map(|a| count as f64 / a);
            let over = z.max_persons.is_some_and(|n| count > n as usize)
                || matches!((z.max_density, density), (Some(max), Some(d)) if d > max);
            let crowd = self.crowds.entry(z.name.clone()).or_default();
            // A surge: persons arriving faster than the rate, over the last half minute.
            crowd.counts.push_back((t, count));
            while crowd.counts.front().is_some_and(|(t0, _)| t - t0 > 30.0) {
                crowd.counts.pop_front();
            }
            if let Some(&(t0, low)) = crowd.counts.iter().min_by_key(|(_, n)| *n) {
                let gained = count.saturating_sub(low);
                let per_min = if t > t0 {
                    gained as f64 / (t - t0) * 60.0
                } else {
                    0.0
                };
                let calm = crowd.surge_at.is_none_or(|at| t - at >= 60.0);
                if gained >= 3
                    && t - t0 >= 2.0
                    && per_min >= self.setup.rules.crowd_surge_per_min
                    && calm
                {
                    crowd.surge_at = Some(t);
                    out.push(TrafficEvent {
                        kind: TrafficKind::CrowdSurge,
                        phase: Phase::Single,
                        rule: z.name.clone(),
                        track_id: None,
                        class: Some(person),
                        alert: true,
                        details: BTreeMap::from([
                            ("persons".to_string(), Value::from(count)),
                            ("gained".to_string(), Value::from(gained)),
                            ("per_min".to_string(), round1(per_min)),
                        ]),
                    });
                }
            }
            let mut details = BTreeMap::from([("persons".to_string(), Value::from(count))]);
            if let Some(d) = density {
                details.insert("persons_per_m2".into(), round2(d));
            }
            let emit = |phase: Phase| TrafficEvent {
                kind: TrafficKind::Crowding,
                phase,
                rule: z.name.clone(),
                track_id: None,
                class: Some(person),
                alert: true,
                details: details.clone(),
            };
            match (crowd.open, over) {
                (None, true) => {
                    crowd.open = Some(Open {
                        since: t,
                        reported: Some(t),
                    });
                    crowd.below_since = None;
                    out.push(emit(Phase::New));
                }
                (Some(mut o), true) => {
                    crowd.below_since = None;
                    if o.reported.is_some_and(|r| t - r >= UPDATE_EVERY_S) {
                        o.reported = Some(t);
                        crowd.open = Some(o);
                        out.push(emit(Phase::Update));
                    }
                }
                (Some(_), false) => {
                    let since = *crowd.below_since.get_or_insert(t);
                    if t - since >= CROWD_END_S {
                        crowd.open = None;
                        crowd.below_since = None;
                        out.push(emit(Phase::End));
                    }
                }
                (None, false) => {}
            }
        }
        out
    }
}

impl TrafficRules {
    /// Each lane, every `queue_period_s` (with a calibration): its queue back from the head of
    /// its arrow, and its congestion level when that changed.
    fn lanes_done(&mut self, out: &mut Vec<TrafficEvent>, t: f64) {
        let Some(ground) = self.ground.as_ref() else {
            return;
        };
        let r = &self.setup.rules;
        for (i, lane) in self.lanes.iter().enumerate() {
            let present: Vec<(bool, [f64; 2])> = self
                .tracks
                .values()
                .filter(|s| s.moved)
                .filter(|s| {
                    s.history.back().is_some_and(|(last, p, _)| {
                        *last >= t && polygon_contains(&lane.polygon, *p)
                    })
                })
                .filter_map(|s| s.last.and_then(|(st, g)| Some((st, g?))))
                .collect();
            let watch = &mut self.watches[i];
            watch.frames += 1;
            if !present.is_empty() {
                watch.occupied += 1;
            }
            let due = watch.reported.is_none_or(|at| t - at >= r.queue_period_s);
            if !due {
                continue;
            }
            if watch.reported.is_none() {
                // The first period starts now.
                watch.reported = Some(t);
                continue;
            }
            watch.reported = Some(t);
            // Queue: standing vehicles from the stop line back, no gap over 20 m.
            let head = {
                let h = &lane.config.direction[1];
                ground.to_ground(Point::new(h[0], h[1]))
            };
            let (mut length, mut queued) = (0.0f64, 0usize);
            if let Some(head) = head {
                let mut back: Vec<f64> = present
                    .iter()
                    .filter(|(standing, _)| *standing)
                    .map(|(_, g)| {
                        -((g[0] - head[0]) * lane.along[0] + (g[1] - head[1]) * lane.along[1])
                    })
                    .filter(|d| *d > -10.0)
                    .collect();
                back.sort_by(f64::total_cmp);
                let mut reach = 0.0f64;
                for d in back {
                    if d - reach > 20.0 {
                        break;
                    }
                    reach = reach.max(d);
                    queued += 1;
                }
                length = if queued > 0 {
                    reach.max(0.0) + 5.0
                } else {
                    0.0
                };
            }
            out.push(TrafficEvent {
                kind: TrafficKind::Queue,
                phase: Phase::Single,
                rule: lane.config.name.clone(),
                track_id: None,
                class: None,
                alert: false,
                details: BTreeMap::from([
                    ("length_m".to_string(), round1(length)),
                    ("vehicles".to_string(), Value::from(queued)),
                ]),
            });
            // Congestion over the period, from the speed of the traffic and how much of the
            // time the lane held any: one slow vehicle now and then is not congestion.
            let n = watch.sightings.len();
            let occupancy = f64::from(watch.occupied) / f64::from(watch.frames.max(1));
            let level = if n == 0 || occupancy < MIN_OCCUPANCY {
                Level::Free
            } else {
                let mean = watch.sightings.iter().map(|(k, _)| k).sum::<f64>() / n as f64;
                let standing = watch.sightings.iter().filter(|(_, s)| *s).count() as f64 / n as f64;
                if mean >= r.heavy_kmh {
                    Level::Free
                } else if mean >= r.congested_kmh {
                    Level::Heavy
                } else if (0.2..=0.8).contains(&standing) && watch.switches >= 2 {
                    Level::StopAndGo
                } else {
                    Level::Congested
                }
            };
            if level != watch.level {
                let mut details = BTreeMap::from([
                    ("level".to_string(), Value::from(level.as_str())),
                    ("previous".to_string(), Value::from(watch.level.as_str())),
                    ("occupancy".to_string(), round2(occupancy)),
                ]);
                if n > 0 {
                    let mean = watch.sightings.iter().map(|(k, _)| k).sum::<f64>() / n as f64;
                    details.insert("mean_kmh".into(), round1(mean));
                }
                out.push(TrafficEvent {
                    kind: TrafficKind::Congestion,
                    phase: Phase::Single,
                    rule: lane.config.name.clone(),
                    track_id: None,
                    class: None,
                    alert: matches!(level, Level::Congested | Level::StopAndGo),
                    details,
                });
                watch.level = level;
            }
            watch.sightings.clear();
            watch.frames = 0;
            watch.occupied = 0;
            watch.switches = 0;
        }
    }

    /// Several vehicles near each other that came to a stand from speed within seconds of each
    /// other (with a calibration): one `sudden_stop` for them.
    fn sudden_stops(&mut self, out: &mut Vec<TrafficEvent>, t: f64) {
        let r = &self.setup.rules;
        let recent: Vec<(u64, f64, [f64; 2])> = self
            .tracks
            .iter()
            .filter(|(_, s)| !s.sudden_reported)
            .filter_map(|(id, s)| s.halted.map(|(at, g)| (*id, at, g)))
            .filter(|(_, at, _)| t - at <= r.sudden_stop_s)
            .collect();
        for &(id, at, g) in &recent {
            let group: Vec<u64> = recent
                .iter()
                .filter(|(_, at2, g2)| {
                    (at2 - at).abs() <= r.sudden_stop_s
                        && ((g2[0] - g[0]).powi(2) + (g2[1] - g[1]).powi(2)).sqrt()
                            <= r.sudden_stop_radius_m
                })
                .map(|(other, _, _)| *other)
                .collect();
            if group.len() >= r.sudden_stop_vehicles as usize && group.contains(&id) {
                for other in &group {
                    if let Some(s) = self.tracks.get_mut(other) {
                        s.sudden_reported = true;
                    }
                }
                let mut ids = group.clone();
                ids.sort_unstable();
                out.push(TrafficEvent {
                    kind: TrafficKind::SuddenStop,
                    phase: Phase::Single,
                    rule: "camera".into(),
                    track_id: None,
                    class: None,
                    alert: true,
                    details: BTreeMap::from([
                        ("vehicles".to_string(), Value::from(group.len())),
                        ("tracks".to_string(), Value::from(ids)),
                        ("ground_m".to_string(), Value::from(vec![g[0], g[1]])),
                    ]),
                });
                break;
            }
        }
    }
}

/// How a track moved over a window of its history.
#[derive(Debug, Clone, Copy)]
struct Motion {
    /// Ground speed, km/h (with a calibration).
    kmh: Option<f64>,
    /// Image speed in box heights per second.
    heights_per_s: f64,
}

impl Motion {
    /// Over the last `window` seconds; `None` until the history covers most of the window.
    fn over(
        history: &VecDeque<(f64, Point, f32)>,
        window: f64,
        ground: Option<&GroundPlane>,
    ) -> Option<Self> {
        let &(t1, p1, _) = history.back()?;
        let &(t0, p0, _) = history.iter().find(|(t, _, _)| t1 - t <= window)?;
        let dt = t1 - t0;
        if dt < window * 0.6 {
            return None;
        }
        let mean_h =
            history.iter().map(|(_, _, h)| f64::from(*h)).sum::<f64>() / history.len() as f64;
        let px = f64::from(((p1.x - p0.x).powi(2) + (p1.y - p0.y).powi(2)).sqrt());
        let kmh = ground
            .and_then(|g| g.distance(p0, p1))
            .map(|m| m / dt * 3.6);
        Some(Self {
            kmh,
            heights_per_s: px / mean_h.max(1.0) / dt,
        })
    }

    fn stationary(&self, r: &RulesConfig) -> bool {
        match self.kmh {
            Some(k) => k < r.stationary_kmh,
            None => self.heights_per_s < r.stationary_kmh / 10.0,
        }
    }

    fn moving(&self, r: &RulesConfig) -> bool {
        match self.kmh {
            Some(k) => k > 2.0 * r.stationary_kmh,
            None => self.heights_per_s > 2.0 * r.stationary_kmh / 10.0,
        }
    }

    /// How far the track went against `along` over the last `window` seconds (metres with a
    /// calibration, else box heights), when it went against it all the way: every step of
    /// the window backwards or sideways, never clearly forwards.
    fn against(
        history: &VecDeque<(f64, Point, f32)>,
        window: f64,
        along: [f64; 2],
        ground: Option<&GroundPlane>,
    ) -> Option<f64> {
        let &(t1, _, _) = history.back()?;
        let span: Vec<&(f64, Point, f32)> = history
            .iter()
            .filter(|(t, _, _)| t1 - t <= window)
            .collect();
        let (first, last) = (span.first()?, span.last()?);
        if last.0 - first.0 < window * 0.9 {
            return None;
        }
        let pos = |p: Point| -> Option<[f64; 2]> {
            match ground {
                Some(g) => g.to_ground(p),
                None => Some([f64::from(p.x), f64::from(p.y)]),
            }
        };
        let mean_h = span.iter().map(|(_, _, h)| f64::from(*h)).sum::<f64>() / span.len() as f64;
        let scale = if ground.is_some() {
            1.0
        } else {
            mean_h.max(1.0)
        };
        let progress = |a: Point, b: Point| -> Option<f64> {
            let (a, b) = (pos(a)?, pos(b)?);
            Some(((b[0] - a[0]) * along[0] + (b[1] - a[1]) * along[1]) / scale)
        };
        // No clear step forwards (jitter allowed: a tenth of the distance asked for).
        for w in span.windows(2) {
            if progress(w[0].1, w[1].1)? > 0.5 {
                return None;
            }
        }
        let total = -progress(first.1, last.1)?;
        (total > 0.0).then_some(total)
    }
}

/// Opens, updates or closes the lasting situation `kind` of one track. `at` is (since when the
/// condition holds, where) while it holds, `None` when it does not.
fn lasting(
    out: &mut Vec<TrafficEvent>,
    state: &mut TrackState,
    kind: TrafficKind,
    at: Option<(f64, String)>,
    after_s: f64,
    t: f64,
    track_id: u64,
) {
    let class = state.class;
    match at {
        Some((since, place)) => {
            let key = (kind, place.clone());
            let open = state.open.entry(key).or_insert(Open {
                since,
                reported: None,
            });
            let held = t - open.since;
            let due = match open.reported {
                None => held >= after_s,
                Some(last) => t - last >= UPDATE_EVERY_S,
            };
            if due {
                let phase = if open.reported.is_none() {
                    Phase::New
                } else {
                    Phase::Update
                };
                open.reported = Some(t);
                out.push(event(
                    kind,
                    phase,
                    &place,
                    track_id,
                    class,
                    [("duration_s", round1(held))],
                ));
            }
            // Any other place of the same kind is over.
            close_where(out, state, kind, track_id, t, |p| p != place);
        }
        None => close_where(out, state, kind, track_id, t, |_| true),
    }
}

/// Closes the open situations of `kind` whose place matches: `end` for those reported,
/// silently for those that never were.
fn close_where(
    out: &mut Vec<TrafficEvent>,
    state: &mut TrackState,
    kind: TrafficKind,
    track_id: u64,
    t: f64,
    matches: impl Fn(&str) -> bool,
) {
    let closing: Vec<(TrafficKind, String)> = state
        .open
        .keys()
        .filter(|(k, p)| *k == kind && matches(p))
        .cloned()
        .collect();
    for key in closing {
        if let Some(open) = state.open.remove(&key) {
            if open.reported.is_some() {
                out.push(event(
                    kind,
                    Phase::End,
                    &key.1,
                    track_id,
                    state.class,
                    [("duration_s", round1(t - open.since))],
                ));
            }
        }
    }
}

fn event<const N: usize>(
    kind: TrafficKind,
    phase: Phase,
    rule: &str,
    track_id: u64,
    class: u16,
    details: [(&str, Value); N],
) -> TrafficEvent {
    TrafficEvent {
        kind,
        phase,
        rule: rule.to_string(),
        track_id: Some(track_id),
        class: Some(class),
        alert: true,
        details: details
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

fn unit(v: [f64; 2]) -> [f64; 2] {
    let n = (v[0] * v[0] + v[1] * v[1]).sqrt().max(1e-12);
    [v[0] / n, v[1] / n]
}

fn round1(v: f64) -> Value {
    Value::from((v * 10.0).round() / 10.0)
}

fn round2(v: f64) -> Value {
    Value::from((v * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CAR: u16 = 2;
    const PERSON: u16 = 0;

    /// 10 pixels per metre, the road along x: a lane from x 0 to 1000 (100 m), y 100..200.
    fn calibration() -> CalibrationConfig {
        CalibrationConfig {
            image: vec![[0.0, 0.0], [1000.0, 0.0], [1000.0, 400.0], [0.0, 400.0]],
            ground: vec![[0.0, 0.0], [100.0, 0.0], [100.0, 40.0], [0.0, 40.0]],
            latitude: None,
            longitude: None,
            heading_deg: None,
            fov_deg: 60.0,
        }
    }

    fn lane(name: &str, y0: f32, y1: f32, eastbound: bool) -> LaneConfig {
        let (tail, head) = if eastbound {
            (50.0, 950.0)
        } else {
            (950.0, 50.0)
        };
        LaneConfig {
            name: name.into(),
            polygon: vec![[0.0, y0], [1000.0, y0], [1000.0, y1], [0.0, y1]],
            direction: vec![[tail, (y0 + y1) / 2.0], [head, (y0 + y1) / 2.0]],
            speed_limit_kmh: Some(50.0),
            stopping: false,
        }
    }

    fn zone(name: &str, kind: ZoneKind, polygon: Vec<[f32; 2]>) -> ZoneConfig {
        let mut z = ZoneConfig::watch(name, polygon, Default::default());
        z.kind = kind;
        z
    }

    fn rules(zones: Vec<ZoneConfig>, calibrated: bool) -> TrafficRules {
        TrafficRules::new(TrafficSetup {
            calibration: calibrated.then(calibration),
            lanes: vec![
                lane("east", 100.0, 200.0, true),
                lane("west", 200.0, 300.0, false),
            ],
            zones,
            rules: RulesConfig::default(),
            vehicles: [CAR].into(),
            person: Some(PERSON),
        })
        .expect("rules apply")
    }

    /// Feeds one object's positions at 5 fps starting at `t0`; returns every event.
    fn drive(
        r: &mut TrafficRules,
        id: u64,
        class: u16,
        path: &[(f32, f32)],
        t0: f64,
    ) -> Vec<TrafficEvent> {
        let mut out = Vec::new();
        for (k, (x, y)) in path.iter().enumerate() {
            let t = t0 + k as f64 * 0.2;
            out.extend(r.observe(id, class, Point::new(*x, *y), 40.0, t));
            out.extend(r.frame_done(&[id].into(), t));
        }
        out
    }

    fn kinds(events: &[TrafficEvent]) -> Vec<(TrafficKind, Phase, String)> {
        events
            .iter()
            .map(|e| (e.kind, e.phase, e.rule.clone()))
            .collect()
    }

    #[test]
    fn speeding_once_per_track_with_the_smoothed_speed() {
        let mut r = rules(vec![], true);
        // 20 m/s = 72 km/h eastbound: 40 px per 0.2 s.
        let path: Vec<(f32, f32)> = (0..20).map(|k| (60.0 + 40.0 * k as f32, 150.0)).collect();
        let events = drive(&mut r, 1, CAR, &path, 0.0);
        let speeding: Vec<_> = events
            .iter()
            .filter(|e| e.kind == TrafficKind::Speeding)
            .collect();
        assert_eq!(speeding.len(), 1, "{events:?}");
        let kmh = speeding[0].details["speed_kmh"].as_f64().expect("speed");
        assert!((kmh - 72.0).abs() < 1.0, "{kmh}");
        assert!(!events.iter().any(|e| e.kind == TrafficKind::WrongWay));
        // 36 km/h (under the limit and its margin) never is speeding.
        let slow: Vec<(f32, f32)> = (0..20).map(|k| (60.0 + 20.0 * k as f32, 150.0)).collect();
        let events = drive(&mut r, 2, CAR, &slow, 10.0);
        assert!(
            events.iter().all(|e| e.kind != TrafficKind::Speeding),
            "{events:?}"
        );
    }

    #[test]
    fn wrong_way_in_the_reversed_lane_only() {
        for calibrated in [true, false] {
            let mut r = rules(vec![], calibrated);
            // Westward (x falling) in the eastbound lane: wrong way, once.
            // 25 km/h: 7 m, or 7.5 box heights of 40 px, in the 2 s asked for.
            let wrong: Vec<(f32, f32)> =
                (0..25).map(|k| (900.0 - 30.0 * k as f32, 150.0)).collect();
            let events = drive(&mut r, 1, CAR, &wrong, 0.0);
            let ww: Vec<_> = events
                .iter()
                .filter(|e| e.kind == TrafficKind::WrongWay)
                .collect();
            assert_eq!(ww.len(), 1, "calibrated {calibrated}: {events:?}");
            assert_eq!(ww[0].rule, "east");
            // The same motion in the westbound lane is right.
            let right: Vec<(f32, f32)> =
                (0..25).map(|k| (900.0 - 20.0 * k as f32, 250.0)).collect();
            let events = drive(&mut r, 2, CAR, &right, 10.0);
            assert!(
                events.iter().all(|e| e.kind != TrafficKind::WrongWay),
                "{events:?}"
            );
            // Backing up a few metres to park is not wrong way.
            let mut reverse: Vec<(f32, f32)> =
                (0..10).map(|k| (100.0 + 30.0 * k as f32, 150.0)).collect();
            reverse.extend((0..15).map(|k| (370.0 - 2.0 * k as f32, 150.0)));
            let events = drive(&mut r, 3, CAR, &reverse, 20.0);
            assert!(
                events.iter().all(|e| e.kind != TrafficKind::WrongWay),
                "{events:?}"
            );
        }
    }

    #[test]
    fn stopped_vehicle_new_after_the_threshold_then_updates_and_one_end() {
        let mut r = rules(vec![], true);
        let stopped_s = RulesConfig::default().stopped_s;
        // Drives 4 s, stands 60 s, drives off.
        let mut path: Vec<(f32, f32)> = (0..20).map(|k| (100.0 + 20.0 * k as f32, 150.0)).collect();
        let stand_from = path.len();
        path.extend((0..300).map(|k| (480.0 + (k % 3) as f32 * 0.5, 150.0 + (k % 2) as f32 * 0.5)));
        path.extend((0..20).map(|k| (480.0 + 20.0 * k as f32, 150.0)));
        let events = drive(&mut r, 7, CAR, &path, 0.0);
        let stopped: Vec<_> = events
            .iter()
            .filter(|e| e.kind == TrafficKind::StoppedVehicle)
            .collect();
        let phases: Vec<Phase> = stopped.iter().map(|e| e.phase).collect();
        assert_eq!(phases.first(), Some(&Phase::New), "{phases:?}");
        assert_eq!(phases.last(), Some(&Phase::End), "{phases:?}");
        assert_eq!(phases.iter().filter(|p| **p == Phase::New).count(), 1);
        assert!(
            phases.iter().filter(|p| **p == Phase::Update).count() >= 2,
            "{phases:?}"
        );
        // Raised once it stood stopped_s (within the speed window), not before.
        let raised = stopped[0].details["duration_s"].as_f64().expect("duration");
        assert!((stopped_s..stopped_s + 1.5).contains(&raised), "{raised}");
        let _ = stand_from;
    }

    #[test]
    fn parked_from_the_start_or_in_a_parking_zone_never_alerts() {
        let parking = zone(
            "bay",
            ZoneKind::Parking,
            vec![
                [600.0, 100.0],
                [800.0, 100.0],
                [800.0, 200.0],
                [600.0, 200.0],
            ],
        );
        let mut r = rules(vec![parking], true);
        let standing: Vec<(f32, f32)> =
            (0..3000).map(|k| (300.0 + (k % 3) as f32, 150.0)).collect();
        let events = drive(&mut r, 1, CAR, &standing, 0.0);
        // Only the lanes' queue reports, empty: nothing about the parked car.
        assert!(
            events
                .iter()
                .all(|e| e.kind == TrafficKind::Queue && e.details["vehicles"] == 0),
            "{events:?}"
        );
        let mut into_bay: Vec<(f32, f32)> =
            (0..20).map(|k| (300.0 + 20.0 * k as f32, 150.0)).collect();
        into_bay.extend((0..600).map(|_| (700.0, 150.0)));
        let events = drive(&mut r, 2, CAR, &into_bay, 700.0);
        assert!(
            events.iter().all(|e| e.kind != TrafficKind::StoppedVehicle),
            "{events:?}"
        );
    }

    #[test]
    fn box_junction_person_on_the_road_and_crossings() {
        let junction = zone(
            "box",
            ZoneKind::BoxJunction,
            vec![
                [400.0, 100.0],
                [600.0, 100.0],
                [600.0, 300.0],
                [400.0, 300.0],
            ],
        );
        let crossing = zone(
            "zebra",
            ZoneKind::Crossing,
            vec![
                [100.0, 100.0],
                [200.0, 100.0],
                [200.0, 300.0],
                [100.0, 300.0],
            ],
        );
        let mut r = rules(vec![junction, crossing], true);
        let mut path: Vec<(f32, f32)> = (0..20).map(|k| (100.0 + 20.0 * k as f32, 250.0)).collect();
        path.extend((0..100).map(|_| (500.0, 250.0)));
        let events = drive(&mut r, 1, CAR, &path, 0.0);
        assert!(
            kinds(&events).contains(&(TrafficKind::BoxBlocked, Phase::New, "box".into())),
            "{events:?}"
        );
        // A person on the zebra crossing is fine; in the lane for 3 s is an incident.
        let on_zebra: Vec<(f32, f32)> = (0..50).map(|k| (150.0, 100.0 + 4.0 * k as f32)).collect();
        let events = drive(&mut r, 2, PERSON, &on_zebra, 100.0);
        // (The car's track ended when the person's frames began: its box incident ends.)
        assert!(kinds(&events).contains(&(TrafficKind::BoxBlocked, Phase::End, "box".into())));
        assert!(events.iter().all(|e| e.track_id != Some(2)), "{events:?}");
        let jaywalk: Vec<(f32, f32)> = (0..50).map(|k| (300.0, 100.0 + 4.0 * k as f32)).collect();
        let events = drive(&mut r, 3, PERSON, &jaywalk, 200.0);
        let k = kinds(&events);
        assert_eq!(
            k.iter()
                .filter(|e| e.0 == TrafficKind::PersonOnCarriageway && e.1 == Phase::New)
                .count(),
            1,
            "{k:?}"
        );
        // The track ends: its situation ends too.
        let ended = r.frame_done(&HashSet::new(), 300.0);
        assert!(
            kinds(&ended).contains(&(TrafficKind::PersonOnCarriageway, Phase::End, "east".into()))
                || kinds(&ended).contains(&(
                    TrafficKind::PersonOnCarriageway,
                    Phase::End,
                    "west".into()
                )),
            "{ended:?}"
        );
    }

    #[test]
    fn loitering_and_crowding_in_a_zone() {
        let mut plaza = zone(
            "plaza",
            ZoneKind::Watch,
            vec![[0.0, 300.0], [1000.0, 300.0], [1000.0, 400.0], [0.0, 400.0]],
        );
        plaza.loitering_s = Some(30.0);
        plaza.max_persons = Some(3);
        let mut r = rules(vec![plaza], true);
        let mut events = Vec::new();
        // Five persons standing in the plaza for 60 s, then all leave.
        for k in 0..300 {
            let t = k as f64 * 0.2;
            for id in 1..=5u64 {
                events.extend(r.observe(id, PERSON, Point::new(100.0 * id as f32, 350.0), 40.0, t));
            }
            events.extend(r.frame_done(&(1..=5).collect(), t));
        }
        events.extend(r.frame_done(&HashSet::new(), 60.2));
        for _ in 0..20 {
            events.extend(r.frame_done(&HashSet::new(), 65.0));
        }
        let k = kinds(&events);
        let count = |kind, phase| k.iter().filter(|e| e.0 == kind && e.1 == phase).count();
        assert_eq!(count(TrafficKind::Loitering, Phase::New), 5, "{k:?}");
        assert_eq!(count(TrafficKind::Loitering, Phase::End), 5, "{k:?}");
        assert_eq!(count(TrafficKind::Crowding, Phase::New), 1, "{k:?}");
        assert!(count(TrafficKind::Crowding, Phase::Update) >= 4, "{k:?}");
        assert_eq!(count(TrafficKind::Crowding, Phase::End), 1, "{k:?}");
    }

    /// Each duration threshold on synthetic capture times: the situation starts once it has
    /// held that long (within a frame and the speed window), never before, whatever the value.
    #[test]
    fn every_duration_threshold_holds_to_the_second() {
        for threshold in [3.0, 12.0, 45.0] {
            let setup = |zones: Vec<ZoneConfig>| {
                let rules = RulesConfig {
                    stopped_s: threshold,
                    box_blocked_s: threshold,
                    person_on_carriageway_s: threshold,
                    ..Default::default()
                };
                TrafficRules::new(TrafficSetup {
                    calibration: Some(calibration()),
                    lanes: vec![
                        lane("east", 100.0, 200.0, true),
                        lane("west", 200.0, 300.0, false),
                    ],
                    zones,
                    rules,
                    vehicles: [CAR].into(),
                    person: Some(PERSON),
                })
                .expect("rules")
            };
            // When (seconds after it began to hold) the first `new` of `kind` came.
            let raised_after = |events: &[(f64, TrafficEvent)], kind: TrafficKind, began: f64| {
                events
                    .iter()
                    .find(|(_, e)| e.kind == kind && e.phase == Phase::New)
                    .map(|(t, _)| t - began)
            };
            let run = |r: &mut TrafficRules, class: u16, path: &[(f32, f32)]| {
                let mut out = Vec::new();
                for (k, (x, y)) in path.iter().enumerate() {
                    let t = k as f64 * 0.2;
                    for e in r.observe(1, class, Point::new(*x, *y), 40.0, t) {
                        out.push((t, e));
                    }
                    for e in r.frame_done(&[1].into(), t) {
                        out.push((t, e));
                    }
                }
                out
            };
            let frames = ((threshold + 20.0) / 0.2) as usize;
            // A car drives 4 s, then stands: stopped_vehicle after `threshold` of standing.
            let mut r = setup(vec![]);
            let mut path: Vec<(f32, f32)> =
                (0..20).map(|k| (100.0 + 20.0 * k as f32, 150.0)).collect();
            path.extend((0..frames).map(|_| (480.0, 150.0)));
            let after = raised_after(&run(&mut r, CAR, &path), TrafficKind::StoppedVehicle, 4.0)
                .expect("raised");
            assert!(
                (threshold..threshold + 1.5).contains(&after),
                "stopped_s {threshold}: {after}"
            );
            // The same in a box junction.
            let junction = zone(
                "box",
                ZoneKind::BoxJunction,
                vec![
                    [400.0, 100.0],
                    [600.0, 100.0],
                    [600.0, 300.0],
                    [400.0, 300.0],
                ],
            );
            let mut r = setup(vec![junction]);
            let after = raised_after(&run(&mut r, CAR, &path), TrafficKind::BoxBlocked, 4.0)
                .expect("raised");
            assert!(
                (threshold..threshold + 1.5).contains(&after),
                "box_blocked_s {threshold}: {after}"
            );
            // A person standing in the lane from t = 0.
            let mut r = setup(vec![]);
            let person: Vec<(f32, f32)> = (0..frames).map(|_| (300.0, 150.0)).collect();
            let after = raised_after(
                &run(&mut r, PERSON, &person),
                TrafficKind::PersonOnCarriageway,
                0.0,
            )
            .expect("raised");
            assert!(
                (threshold..threshold + 0.3).contains(&after),
                "person_on_carriageway_s {threshold}: {after}"
            );
            // Loitering in a zone of its own.
            let mut plaza = zone(
                "plaza",
                ZoneKind::Watch,
                vec![[0.0, 300.0], [1000.0, 300.0], [1000.0, 400.0], [0.0, 400.0]],
            );
            plaza.loitering_s = Some(threshold);
            let mut r = setup(vec![plaza]);
            let loiterer: Vec<(f32, f32)> = (0..frames).map(|_| (300.0, 350.0)).collect();
            let after = raised_after(&run(&mut r, PERSON, &loiterer), TrafficKind::Loitering, 0.0)
                .expect("raised");
            assert!(
                (threshold..threshold + 0.3).contains(&after),
                "loitering_s {threshold}: {after}"
            );
        }
    }

    /// Runs several vehicles together at 5 fps: `paths[i]` is vehicle i's anchor per frame
    /// (`None`: not seen). Returns every event.
    fn together(
        r: &mut TrafficRules,
        class: u16,
        paths: &[Vec<Option<(f32, f32)>>],
        t0: f64,
    ) -> Vec<TrafficEvent> {
        let frames = paths.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Vec::new();
        for k in 0..frames {
            let t = t0 + k as f64 * 0.2;
            let mut live = HashSet::new();
            for (i, path) in paths.iter().enumerate() {
                if let Some(Some((x, y))) = path.get(k) {
                    let id = 100 + i as u64;
                    live.insert(id);
                    out.extend(r.observe(id, class, Point::new(*x, *y), 40.0, t));
                }
            }
            out.extend(r.frame_done(&live, t));
        }
        out
    }

    #[test]
    fn queue_length_from_the_stop_line_and_congestion_levels() {
        let mut r = rules(vec![], true);
        // Eastbound lane, arrow head at x 950 (95 m). Four cars drive in at 36 km/h and stand
        // 7 m apart from the stop line back: 95, 88, 81, 74 m.
        let paths: Vec<Vec<Option<(f32, f32)>>> = (0..4)
            .map(|i| {
                let stop = 950.0 - 70.0 * i as f32;
                let start = stop - 300.0;
                (0..400)
                    .map(|k| Some(((start + 20.0 * k as f32).min(stop), 150.0)))
                    .collect()
            })
            .collect();
        let events = together(&mut r, CAR, &paths, 0.0);
        let queues: Vec<&TrafficEvent> = events
            .iter()
            .filter(|e| e.kind == TrafficKind::Queue && e.rule == "east")
            .collect();
        assert!(queues.len() >= 2, "{events:?}");
        let last = queues.last().expect("queue");
        assert_eq!(last.details["vehicles"], Value::from(4));
        // 21 m from the stop line to the last car, plus a car length.
        let length = last.details["length_m"].as_f64().expect("length");
        assert!((25.0..=27.0).contains(&length), "{length}");
        // The other lane is empty: queue 0, no congestion.
        assert!(events.iter().any(|e| e.kind == TrafficKind::Queue
            && e.rule == "west"
            && e.details["length_m"] == 0.0));
        let congestion: Vec<&TrafficEvent> = events
            .iter()
            .filter(|e| e.kind == TrafficKind::Congestion)
            .collect();
        assert!(
            congestion.iter().all(|e| e.rule == "east"),
            "{congestion:?}"
        );
        assert_eq!(
            congestion.last().map(|e| e.details["level"].clone()),
            Some(Value::from("congested")),
            "{congestion:?}"
        );
        assert!(congestion.last().is_some_and(|e| e.alert));
    }

    #[test]
    fn one_slow_vehicle_now_and_then_is_not_congestion() {
        let mut r = rules(vec![], true);
        // A cyclist at 7 km/h (4 px a frame) crosses 5 m of the lane's corner every 40 s:
        // in the lane 4 s of each 40.
        let mut events = Vec::new();
        for round in 0..4u64 {
            let path: Vec<Option<(f32, f32)>> = (0..200)
                .map(|k| (k < 20).then_some((900.0 + 4.0 * k as f32, 150.0)))
                .collect();
            events.extend(together(&mut r, CAR, &[path], round as f64 * 40.0));
        }
        assert!(
            events.iter().all(|e| e.kind != TrafficKind::Congestion),
            "{events:?}"
        );
    }

    #[test]
    fn sudden_stop_of_several_vehicles_together_only() {
        let mut r = rules(vec![], true);
        // Three cars at 54 km/h (30 px a frame) stop within a second of each other, 6 m apart.
        let stop_at = |i: usize| 600.0 + 60.0 * i as f32;
        let paths: Vec<Vec<Option<(f32, f32)>>> = (0..3)
            .map(|i| {
                (0..80)
                    .map(|k| {
                        Some((
                            (100.0 + 60.0 * i as f32 + 30.0 * k as f32).min(stop_at(i)),
                            150.0,
                        ))
                    })
                    .collect()
            })
            .collect();
        let events = together(&mut r, CAR, &paths, 0.0);
        let sudden: Vec<&TrafficEvent> = events
            .iter()
            .filter(|e| e.kind == TrafficKind::SuddenStop)
            .collect();
        assert_eq!(sudden.len(), 1, "{events:?}");
        assert_eq!(sudden[0].details["vehicles"], Value::from(3));
        // One car braking alone is not a sudden stop.
        let mut r = rules(vec![], true);
        let alone = vec![(0..80)
            .map(|k| Some(((100.0 + 30.0 * k as f32).min(600.0), 150.0)))
            .collect()];
        let events = together(&mut r, CAR, &alone, 0.0);
        assert!(
            events.iter().all(|e| e.kind != TrafficKind::SuddenStop),
            "{events:?}"
        );
    }

    #[test]
    fn a_crowd_forming_fast_is_a_surge() {
        let mut plaza = zone(
            "plaza",
            ZoneKind::Watch,
            vec![[0.0, 300.0], [1000.0, 300.0], [1000.0, 400.0], [0.0, 400.0]],
        );
        plaza.max_persons = Some(50);
        let mut r = rules(vec![plaza], true);
        // Ten persons arrive within 10 s (60 a minute), one every second.
        let paths: Vec<Vec<Option<(f32, f32)>>> = (0..10)
            .map(|i| {
                (0..100)
                    .map(|k| (k >= 5 * i).then_some((50.0 + 90.0 * i as f32, 350.0)))
                    .collect()
            })
            .collect();
        let events = together(&mut r, PERSON, &paths, 0.0);
        let surges: Vec<&TrafficEvent> = events
            .iter()
            .filter(|e| e.kind == TrafficKind::CrowdSurge)
            .collect();
        assert_eq!(
            surges.len(),
            1,
            "one surge, then calm for a minute: {events:?}"
        );
        // Arriving one every 10 s (6 a minute) is no surge.
        let mut plaza = zone(
            "plaza",
            ZoneKind::Watch,
            vec![[0.0, 300.0], [1000.0, 300.0], [1000.0, 400.0], [0.0, 400.0]],
        );
        plaza.max_persons = Some(50);
        let mut r = rules(vec![plaza], true);
        let paths: Vec<Vec<Option<(f32, f32)>>> = (0..10)
            .map(|i| {
                (0..600)
                    .map(|k| (k >= 50 * i).then_some((50.0 + 90.0 * i as f32, 350.0)))
                    .collect()
            })
            .collect();
        let events = together(&mut r, PERSON, &paths, 0.0);
        assert!(
            events.iter().all(|e| e.kind != TrafficKind::CrowdSurge),
            "{events:?}"
        );
    }

    /// Per (kind, place, track): `new`, then `update`s, then `end`, never a second `new`
    /// while open.
    fn well_formed(events: &[TrafficEvent]) -> Result<(), String> {
        let mut open: HashMap<(TrafficKind, String, Option<u64>), bool> = HashMap::new();
        for e in events {
            let key = (e.kind, e.rule.clone(), e.track_id);
            let is_open = open.get(&key).copied().unwrap_or(false);
            match e.phase {
                Phase::New if is_open => return Err(format!("second new: {e:?}")),
                Phase::New => {
                    open.insert(key, true);
                }
                Phase::Update | Phase::End if !is_open => {
                    return Err(format!("{:?} without new: {e:?}", e.phase))
                }
                Phase::End => {
                    open.insert(key, false);
                }
                _ => {}
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random driving, standing and jitter at uneven frame gaps: lasting situations are
        /// always new..end, with no duplicate new.
        #[test]
        fn lasting_situations_are_well_formed(
            moves in prop::collection::vec((0u8..3, 1usize..80), 1..12),
            jitter in prop::collection::vec(-3.0f32..3.0, 400),
            gaps in prop::collection::vec(0.05f64..0.6, 400),
            person in any::<bool>(),
        ) {
            let mut r = rules(vec![zone("box", ZoneKind::BoxJunction, vec![[400.0, 100.0], [600.0, 100.0], [600.0, 300.0], [400.0, 300.0]])], true);
            let class = if person { PERSON } else { CAR };
            let (mut x, mut t, mut k) = (50.0f32, 0.0f64, 0usize);
            let mut events = Vec::new();
            for (mode, steps) in moves {
                for _ in 0..steps {
                    x += match mode { 0 => 0.0, 1 => 15.0, _ => -15.0 };
                    x = x.clamp(0.0, 1000.0);
                    let j = jitter[k % jitter.len()];
                    t += gaps[k % gaps.len()];
                    k += 1;
                    events.extend(r.observe(1, class, Point::new(x + j, 150.0 + j), 40.0, t));
                    events.extend(r.frame_done(&[1].into(), t));
                }
            }
            events.extend(r.frame_done(&HashSet::new(), t + 1.0));
            prop_assert!(well_formed(&events).is_ok(), "{:?}", well_formed(&events));
            // Everything opened was closed once the track ended.
            let news = events.iter().filter(|e| e.phase == Phase::New).count();
            let ends = events.iter().filter(|e| e.phase == Phase::End).count();
            prop_assert_eq!(news, ends);
        }

        /// A vehicle standing from its first sighting, however it jitters and however long,
        /// never raises anything.
        #[test]
        fn standing_from_the_start_never_alerts(
            jitter in prop::collection::vec(-2.0f32..2.0, 50),
            frames in 50usize..1500,
            x in 10.0f32..990.0,
        ) {
            let mut r = rules(vec![], true);
            let path: Vec<(f32, f32)> = (0..frames).map(|k| (x + jitter[k % 50], 150.0 + jitter[(k + 7) % 50])).collect();
            let events = drive(&mut r, 1, CAR, &path, 0.0);
            // Only the lanes' queue reports, empty: nothing about this vehicle.
            prop_assert!(events.iter().all(|e| e.kind == TrafficKind::Queue && e.details["vehicles"] == 0), "{:?}", events);
        }
    }
}

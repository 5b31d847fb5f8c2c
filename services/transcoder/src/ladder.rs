//! The ABR ladder: which renditions a chunk is transcoded into, how a ladder file reads, and what makes a
//! ladder valid. A stream's ladder travels as a `LadderSet` event; the default comes from configuration.

use ladder_proto::RenditionConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// Names the rendition in keys and URLs, e.g. `720p`.
    pub name: String,
    /// Output height in pixels, even.
    pub height: u32,
    /// Output width, even; 0 (the default) follows the source aspect ratio.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub width: u32,
    /// Target video bitrate in bits per second.
    pub bitrate: u64,
    /// Video codec: `h264`.
    #[serde(default = "default_codec")]
    pub codec: String,
    /// Frame-rate cap; 0 (the default) keeps the source rate.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub max_fps: f64,
    /// `copy` (the default: unchanged) or `aac` (re-encoded at `audio_bitrate`).
    #[serde(default = "default_audio")]
    pub audio: String,
    /// Bits per second of re-encoded audio; 0 means 128 kb/s.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub audio_bitrate: u64,
}

fn default_codec() -> String {
    "h264".into()
}
fn default_audio() -> String {
    "copy".into()
}
fn is_zero(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

impl RenditionSpec {
    pub fn new(name: &str, height: u32, bitrate: u64) -> RenditionSpec {
        RenditionSpec {
            name: name.into(),
            height,
            width: 0,
            bitrate,
            codec: default_codec(),
            max_fps: 0.0,
            audio: default_audio(),
            audio_bitrate: 0,
        }
    }

    pub fn audio_bitrate_or_default(&self) -> u64 {
        if self.audio_bitrate == 0 {
            128_000
        } else {
            self.audio_bitrate
        }
    }
}

/// The file `ladder stream set-ladder` reads and `ladder stream show` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderFile {
    pub rendition: Vec<RenditionSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    #[error("ladder file: {0}")]
    Syntax(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(index: usize, field: &str, message: impl Into<String>) -> LadderError {
    LadderError::Invalid { field: format!("rendition[{index}].{field}"), message: message.into() }
}

/// 720p at 3 Mb/s, 480p at 1.5 Mb/s and 360p at 800 kb/s, the lower two capped at 30 fps.
pub fn default_ladder() -> Vec<RenditionSpec> {
    vec![
        RenditionSpec::new("720p", 720, 3_000_000),
        RenditionSpec { max_fps: 30.0, ..RenditionSpec::new("480p", 480, 1_500_000) },
        RenditionSpec { max_fps: 30.0, ..RenditionSpec::new("360p", 360, 800_000) },
    ]
}

/// Parses and validates a ladder file (TOML, one `[[rendition]]` table per rendition).
pub fn parse(text: &str) -> Result<Vec<RenditionSpec>, LadderError> {
    let file: LadderFile = toml::from_str(text).map_err(|e| LadderError::Syntax(e.to_string()))?;
    validate(&file.rendition)?;
    Ok(file.rendition)
}

pub fn to_toml(renditions: &[RenditionSpec]) -> String {
    toml::to_string(&LadderFile { rendition: renditions.to_vec() }).unwrap_or_default()
}

/// Checks a ladder; the error names the rendition and field at fault.
pub fn validate(renditions: &[RenditionSpec]) -> Result<(), LadderError> {
    if renditions.is_empty() {
        return Err(LadderError::Invalid { field: "rendition".into(), message: "a ladder needs at least one".into() });
    }
    if renditions.len() > 8 {
        return Err(LadderError::Invalid { field: "rendition".into(), message: "at most 8 renditions".into() });
    }
    for (i, r) in renditions.iter().enumerate() {
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 32
            && r.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(invalid(i, "name", format!("{:?} must be 1 to 32 of a-z 0-9 - _", r.name)));
        }
        // `source` is where the source chunks are stored (`live/<stream>/<session>/source/`).
        if r.name == "source" {
            return Err(invalid(i, "name", "\"source\" is reserved for the source chunks"));
        }
        if renditions[..i].iter().any(|other| other.name == r.name) {
            return Err(invalid(i, "name", format!("{:?} is used twice", r.name)));
        }
        if r.codec != "h264" {
            return Err(invalid(i, "codec", format!("unknown codec {:?} (supported: h264)", r.codec)));
        }
        if r.height % 2 == 1 || !(64..=4320).contains(&r.height) {
            return Err(invalid(i, "height", format!("{} must be even and between 64 and 4320", r.height)));
        }
        if r.width != 0 && (r.width % 2 == 1 || !(64..=7680).contains(&r.width)) {
            return Err(invalid(
                i,
                "width",
                format!("{} must be 0 (from the aspect ratio) or even, 64 to 7680", r.width),
            ));
        }
        if r.bitrate == 0 || r.bitrate > 100_000_000 {
            return Err(invalid(i, "bitrate", format!("{} must be between 1 and 100000000 b/s", r.bitrate)));
        }
        if !(r.max_fps == 0.0 || (1.0..=240.0).contains(&r.max_fps)) {
            return Err(invalid(i, "max_fps", format!("{} must be 0 (source rate) or 1 to 240", r.max_fps)));
        }
        match r.audio.as_str() {
            "copy" => {}
            "aac" if r.audio_bitrate == 0 || (16_000..=512_000).contains(&r.audio_bitrate) => {}
            "aac" => return Err(invalid(i, "audio_bitrate", format!("{} must be 16000 to 512000", r.audio_bitrate))),
            other => return Err(invalid(i, "audio", format!("unknown audio mode {other:?} (copy or aac)"))),
        }
    }
    Ok(())
}

/// The ladder a `ladder.set` event carries, checked with the rules ladder files follow. The event comes from the
/// bus, where anything with access to NATS may have published it: the rendition names end up in object keys,
/// so an unchecked one could point outside the stream's keys.
pub fn from_event(renditions: &[RenditionConfig]) -> Result<Vec<RenditionSpec>, LadderError> {
    let ladder: Vec<RenditionSpec> = renditions.iter().map(RenditionSpec::from).collect();
    validate(&ladder)?;
    Ok(ladder)
}

impl From<&RenditionConfig> for RenditionSpec {
    fn from(c: &RenditionConfig) -> RenditionSpec {
        RenditionSpec {
            name: c.name.clone(),
            height: c.height,
            width: c.width,
            bitrate: c.video_bitrate,
            codec: if c.video_codec.is_empty() { default_codec() } else { c.video_codec.clone() },
            max_fps: c.max_fps,
            audio: if c.audio.is_empty() { default_audio() } else { c.audio.clone() },
            audio_bitrate: c.audio_bitrate,
        }
    }
}

impl From<&RenditionSpec> for RenditionConfig {
    fn from(r: &RenditionSpec) -> RenditionConfig {
        RenditionConfig {
            name: r.name.clone(),
            height: r.height,
            width: r.width,
            video_bitrate: r.bitrate,
            video_codec: r.codec.clone(),
            max_fps: r.max_fps,
            audio: r.audio.clone(),
            audio_bitrate: r.audio_bitrate,
        }
    }
}

/// The renditions of `ladder` that do not upscale a `width`x`height` source. A source smaller than every
/// rendition gets the smallest one at the source's own height. An unknown size (0) keeps the whole ladder.
pub fn fit(ladder: &[RenditionSpec], _width: u32, height: u32) -> Vec<RenditionSpec> {
    if height == 0 {
        return ladder.to_vec();
    }
    let fitting: Vec<RenditionSpec> = ladder.iter().filter(|r| r.height <= height).cloned().collect();
    if !fitting.is_empty() {
        return fitting;
    }
    ladder
        .iter()
        .min_by_key(|r| r.height)
        .map(|smallest| vec![RenditionSpec { height: height & !1, width: 0, ..smallest.clone() }])
        .unwrap_or_default()
}

/// How many source frames make one output frame under a frame-rate cap: 1 keeps every frame. Only whole
/// ratios are used (60 to 30, 59.94 to 29.97, 50 to 25), so every kept frame keeps its exact timestamp and
/// each chunk still starts with its first frame.
pub fn frame_step(frame_duration: u64, max_fps: f64) -> u64 {
    if frame_duration == 0 || max_fps <= 0.0 {
        return 1;
    }
    let source_fps = 90_000.0 / frame_duration as f64;
    // 1% slack: 59.94 under a 30 cap is a step of 2, not 3.
    (source_fps / (max_fps * 1.01)).ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(renditions: &[RenditionSpec]) -> Vec<&str> {
        renditions.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn never_upscales() {
        let ladder = default_ladder();
        assert_eq!(names(&fit(&ladder, 1920, 1080)), vec!["720p", "480p", "360p"]);
        assert_eq!(names(&fit(&ladder, 1280, 720)), vec!["720p", "480p", "360p"]);
        assert_eq!(names(&fit(&ladder, 854, 480)), vec!["480p", "360p"]);
        let tiny = fit(&ladder, 320, 240);
        assert_eq!((tiny[0].name.as_str(), tiny[0].height), ("360p", 240));
    }

    #[test]
    fn parses_a_ladder_file_with_defaults() {
        let ladder = parse(
            r#"
            [[rendition]]
            name = "1080p"
            height = 1080
            bitrate = 6_000_000

            [[rendition]]
            name = "240p"
            height = 240
            bitrate = 400_000
            max_fps = 15
            audio = "aac"
            audio_bitrate = 64_000
            "#,
        )
        .expect("valid");
        assert_eq!(ladder[0], RenditionSpec::new("1080p", 1080, 6_000_000));
        assert_eq!((ladder[1].max_fps, ladder[1].audio.as_str(), ladder[1].audio_bitrate), (15.0, "aac", 64_000));
        assert_eq!(parse(&to_toml(&ladder)).expect("round trip"), ladder);
    }

    #[test]
    fn refuses_invalid_ladders_naming_the_field() {
        let error = |text: &str| parse(text).expect_err("invalid").to_string();
        assert_eq!(
            error("[[rendition]]\nname = \"a\"\nheight = 480\nbitrate = 1\ncodec = \"vp9\""),
            "rendition[0].codec: unknown codec \"vp9\" (supported: h264)"
        );
        assert_eq!(
            error("[[rendition]]\nname = \"a\"\nheight = 481\nbitrate = 1"),
            "rendition[0].height: 481 must be even and between 64 and 4320"
        );
        assert_eq!(
            error("[[rendition]]\nname = \"a\"\nheight = 480\nbitrate = 1\n[[rendition]]\nname = \"b\"\nheight = 360\nbitrate = 0"),
            "rendition[1].bitrate: 0 must be between 1 and 100000000 b/s"
        );
        assert_eq!(
            error("[[rendition]]\nname = \"a\"\nheight = 480\nwidth = 853\nbitrate = 1"),
            "rendition[0].width: 853 must be 0 (from the aspect ratio) or even, 64 to 7680"
        );
        assert!(error("[[rendition]]\nname = \"a\"\nheight = 480\nbitrat = 1").starts_with("ladder file:"));
    }

    #[test]
    fn refuses_hostile_rendition_names_from_the_bus() {
        let event = |name: &str| {
            let spec = RenditionSpec::new(name, 480, 1_000_000);
            from_event(&[RenditionConfig::from(&spec)])
        };
        assert_eq!(event("480p").expect("valid")[0].name, "480p");
        let long = "a".repeat(33);
        // `source` would name the source chunks' keys: a rendition there would collide with them.
        for name in ["../x", "a/b", "", ".", "..", "x.ts", "/etc", "a\\b", "720p\u{202e}", "é", "Up", "source", &long]
        {
            let error = event(name).expect_err(name).to_string();
            assert!(error.starts_with("rendition[0].name: "), "{name:?}: {error}");
        }
        assert!(event(&"a".repeat(32)).is_ok());
        let mut huge = RenditionConfig::from(&RenditionSpec::new("big", 480, 1_000_000));
        huge.height = 100_000;
        assert!(from_event(&[huge]).is_err());
        assert!(from_event(&[]).is_err(), "an empty ladder would transcode nothing");
    }

    #[test]
    fn frame_steps() {
        assert_eq!(frame_step(1500, 30.0), 2); // 60 -> 30
        assert_eq!(frame_step(1501, 30.0), 2); // 59.94 -> 29.97
        assert_eq!(frame_step(1800, 30.0), 2); // 50 -> 25
        assert_eq!(frame_step(3000, 30.0), 1); // 30 stays
        assert_eq!(frame_step(3003, 30.0), 1); // 29.97 stays
        assert_eq!(frame_step(3600, 30.0), 1); // 25 stays
        assert_eq!(frame_step(1500, 0.0), 1);
    }
}

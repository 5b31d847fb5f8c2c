//! The ABR ladder: which renditions a chunk is transcoded into.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// Names the rendition in keys and URLs, e.g. `720p`.
    pub name: String,
    /// Output height in pixels; the width follows the source aspect ratio, rounded to even.
    pub height: u32,
    /// Target video bitrate in bits per second.
    pub bitrate: u64,
}

/// 720p at 3 Mb/s, 480p at 1.5 Mb/s, 360p at 800 kb/s.
pub fn default_ladder() -> Vec<RenditionSpec> {
    [
        ("720p", 720, 3_000_000),
        ("480p", 480, 1_500_000),
        ("360p", 360, 800_000),
    ]
    .into_iter()
    .map(|(name, height, bitrate)| RenditionSpec {
        name: name.into(),
        height,
        bitrate,
    })
    .collect()
}

/// The renditions of `ladder` that do not upscale a `width`x`height` source. A source smaller than every
/// rendition gets the smallest one at the source's own height. An unknown size (0) keeps the whole ladder.
pub fn fit(ladder: &[RenditionSpec], _width: u32, height: u32) -> Vec<RenditionSpec> {
    if height == 0 {
        return ladder.to_vec();
    }
    let fitting: Vec<RenditionSpec> = ladder
        .iter()
        .filter(|r| r.height <= height)
        .cloned()
        .collect();
    if !fitting.is_empty() {
        return fitting;
    }
    ladder
        .iter()
        .min_by_key(|r| r.height)
        .map(|smallest| {
            vec![RenditionSpec {
                height: height & !1,
                ..smallest.clone()
            }]
        })
        .unwrap_or_default()
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
        assert_eq!(
            names(&fit(&ladder, 1920, 1080)),
            vec!["720p", "480p", "360p"]
        );
        assert_eq!(
            names(&fit(&ladder, 1280, 720)),
            vec!["720p", "480p", "360p"]
        );
        assert_eq!(names(&fit(&ladder, 854, 480)), vec!["480p", "360p"]);
        let tiny = fit(&ladder, 320, 240);
        assert_eq!((tiny[0].name.as_str(), tiny[0].height), ("360p", 240));
    }
}

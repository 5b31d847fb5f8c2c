//! AAC in ADTS framing.

/// RFC 6381 codecs string of the first ADTS frame in `data`, e.g. `mp4a.40.2` for AAC-LC.
pub fn adts_codecs(data: &[u8]) -> Option<String> {
    let header = adts_header(data)?;
    Some(format!("mp4a.40.{}", header.object_type))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type (2 = AAC-LC).
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

const SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

pub fn adts_header(data: &[u8]) -> Option<AdtsHeader> {
    let start = data.windows(2).position(|w| w[0] == 0xff && w[1] & 0xf6 == 0xf0)?;
    let h = data.get(start..start + 7)?;
    Some(AdtsHeader {
        object_type: (h[2] >> 6) + 1,
        sample_rate: *SAMPLE_RATES.get(usize::from((h[2] >> 2) & 0x0f))?,
        channels: ((h[2] & 0x01) << 2) | (h[3] >> 6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_aac_lc_stereo_header() {
        // profile 1 (LC), 48 kHz (index 3), 2 channels.
        let header = adts_header(&[0xff, 0xf1, 0x4c, 0x80, 0x2e, 0x7f, 0xfc]).expect("adts");
        assert_eq!(header, AdtsHeader { object_type: 2, sample_rate: 48000, channels: 2 });
        assert_eq!(adts_codecs(&[0xff, 0xf1, 0x4c, 0x80, 0x2e, 0x7f, 0xfc]).as_deref(), Some("mp4a.40.2"));
    }
}

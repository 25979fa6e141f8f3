//! Joining shots into one MP4 without re-encoding, inside the decoder child (the inputs are
//! provider files, untrusted): every shot's H.264 samples are copied in order into one track,
//! written by the local renderer's muxer (`render::mp4`). That is only valid when the shots
//! share their codec parameters: the same SPS and PPS, frame size and timescale, no reordered
//! frames (B-frames), and each shot starts on a key frame. Otherwise the answer says which shot
//! differs and how; nothing is written.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::render::mp4::AvcTrack;

/// What a join wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    pub shots: usize,
    pub samples: usize,
    pub seconds: f64,
    pub bytes: u64,
}

/// One shot's track: what must match, and where its samples are.
struct Shot {
    label: String,
    reader: mp4::Mp4Reader<BufReader<File>>,
    track_id: u32,
    samples: u32,
    width: u16,
    height: u16,
    timescale: u32,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    nal_len: usize,
}

fn open(label: &str, path: &Path) -> Result<Shot, String> {
    let fail = |why: String| format!("shot {label}: {why}");
    let file =
        File::open(path).map_err(|e| fail(format!("cannot open {}: {e}", path.display())))?;
    let size = file
        .metadata()
        .map_err(|e| fail(format!("cannot read it: {e}")))?
        .len();
    let reader = mp4::Mp4Reader::read_header(BufReader::new(file), size)
        .map_err(|e| fail(format!("not a readable MP4: {e}")))?;
    let video: Vec<&mp4::Mp4Track> = reader
        .tracks()
        .values()
        .filter(|t| matches!(t.track_type(), Ok(mp4::TrackType::Video)))
        .collect();
    let [track] = video.as_slice() else {
        return Err(fail(format!(
            "{} video tracks (a join takes one each)",
            video.len()
        )));
    };
    if reader.tracks().len() > 1 {
        return Err(fail(
            "it has more than the video track (audio?): a join would drop it".into(),
        ));
    }
    let avcc = match (track.media_type(), &track.trak.mdia.minf.stbl.stsd.avc1) {
        (Ok(mp4::MediaType::H264), Some(avc1)) => avc1.avcc.clone(),
        _ => return Err(fail("its video is not H.264 (avc1)".into())),
    };
    if track.trak.mdia.minf.stbl.ctts.is_some() {
        return Err(fail(
            "it has reordered frames (B-frames, a ctts box): a join would need re-encoding".into(),
        ));
    }
    let shot = Shot {
        label: label.to_string(),
        track_id: track.track_id(),
        samples: track.sample_count(),
        width: track.width(),
        height: track.height(),
        timescale: track.timescale(),
        sps: avcc
            .sequence_parameter_sets
            .iter()
            .map(|n| n.bytes.clone())
            .collect(),
        pps: avcc
            .picture_parameter_sets
            .iter()
            .map(|n| n.bytes.clone())
            .collect(),
        nal_len: usize::from(avcc.length_size_minus_one & 3) + 1,
        reader,
    };
    if shot.samples == 0 {
        return Err(fail("its video track is empty".into()));
    }
    if shot.sps.len() != 1 || shot.pps.len() != 1 || shot.sps[0].len() < 4 {
        return Err(fail(format!(
            "{} SPS and {} PPS (a join takes one of each)",
            shot.sps.len(),
            shot.pps.len()
        )));
    }
    Ok(shot)
}

/// Why `b` cannot follow `a` in one track, if it cannot.
fn mismatch(a: &Shot, b: &Shot) -> Option<String> {
    let why = if (a.width, a.height) != (b.width, b.height) {
        format!(
            "is {}x{}, shot {} is {}x{}",
            b.width, b.height, a.label, a.width, a.height
        )
    } else if a.timescale != b.timescale {
        format!(
            "has timescale {}, shot {} has {}",
            b.timescale, a.label, a.timescale
        )
    } else if a.sps != b.sps || a.pps != b.pps {
        format!(
            "was encoded with other settings than shot {} (its SPS/PPS differ)",
            a.label
        )
    } else {
        return None;
    };
    Some(format!(
        "cannot join without re-encoding: shot {} {why}",
        b.label
    ))
}

/// Split one length-prefixed sample into its NAL units; `None` if a length runs past it.
fn nal_units(sample: &[u8], nal_len: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < nal_len {
            return None;
        }
        let (len, tail) = rest.split_at(nal_len);
        let n = len
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if n > tail.len() {
            return None;
        }
        out.push(&tail[..n]);
        rest = &tail[n..];
    }
    Some(out)
}

/// Join `shots` (label, path), in order, into the MP4 bytes of one track.
pub fn join(shots: &[(String, std::path::PathBuf)]) -> Result<(Vec<u8>, Joined), String> {
    let mut opened = Vec::with_capacity(shots.len());
    for (label, path) in shots {
        let shot = open(label, path)?;
        if let Some(why) = opened.first().and_then(|first| mismatch(first, &shot)) {
            return Err(why);
        }
        opened.push(shot);
    }
    let Some(first) = opened.first() else {
        return Err("no shots to join".into());
    };
    let mut track = AvcTrack::remux(
        u32::from(first.width),
        u32::from(first.height),
        first.timescale,
        &first.sps[0],
        &first.pps[0],
    );
    let (timescale, mut samples, mut ticks) = (first.timescale, 0usize, 0u64);
    for shot in &mut opened {
        for n in 1..=shot.samples {
            let sample = match shot.reader.read_sample(shot.track_id, n) {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(e) => return Err(format!("shot {}: sample {n} unreadable: {e}", shot.label)),
            };
            if n == 1 && !sample.is_sync {
                return Err(format!(
                    "cannot join without re-encoding: shot {} does not start on a key frame",
                    shot.label
                ));
            }
            if sample.rendering_offset != 0 {
                return Err(format!(
                    "cannot join without re-encoding: shot {} has reordered frames",
                    shot.label
                ));
            }
            let nals = nal_units(&sample.bytes, shot.nal_len)
                .ok_or_else(|| format!("shot {}: sample {n} is malformed", shot.label))?;
            track.push_sample(nals, sample.duration, sample.is_sync);
            samples += 1;
            ticks += u64::from(sample.duration);
        }
    }
    let bytes = track.finish().map_err(|e| e.to_string())?;
    let joined = Joined {
        shots: opened.len(),
        samples,
        seconds: ticks as f64 / f64::from(timescale.max(1)),
        bytes: bytes.len() as u64,
    };
    Ok((bytes, joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_into_nal_units_and_bad_lengths_are_refused() {
        let s = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41];
        assert_eq!(
            nal_units(&s, 4).unwrap(),
            vec![&[0x65u8, 1][..], &[0x41u8][..]]
        );
        assert!(nal_units(&[0, 0, 0, 9, 0x65], 4).is_none());
        assert_eq!(nal_units(&[0, 1, 0x65], 2).unwrap(), vec![&[0x65u8][..]]);
    }
}

//! A minimal fast-start MP4 (ISO/IEC 14496-12 + 14496-15) writer for one H.264 video track.
//!
//! Layout: `ftyp`, `moov` (one `avc1` track with `avcC` built from the encoder's SPS/PPS, `colr`,
//! `pasp`, and `stts`/`stss`/`stsz`/`stsc`/`stco` describing a single chunk), then `mdat`. The
//! whole file is assembled in memory (a 15 s 720p clip is a few MB), which lets `moov` go first
//! so browsers can start playing before the download ends.

use super::RenderError;

/// Movie timescale (ms).
const MOVIE_TIMESCALE: u32 = 1000;

pub(crate) struct AvcTrack {
    width: u32,
    height: u32,
    /// Media ticks per frame; the media timescale is `fps * TICKS_PER_FRAME`.
    media_timescale: u32,
    tick: u32,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    mdat: Vec<u8>,
    sizes: Vec<u32>,
    durations: Vec<u32>,
    /// 1-based numbers of IDR samples.
    sync: Vec<u32>,
    /// Ticks of frames the encoder dropped before the first sample.
    leading_gap: u32,
    frame_start: usize,
    frame_idr: bool,
}

const TICKS_PER_FRAME: u32 = 1000;

impl AvcTrack {
    pub(super) fn new(width: u32, height: u32, fps: u32) -> Self {
        AvcTrack {
            width,
            height,
            media_timescale: fps * TICKS_PER_FRAME,
            tick: TICKS_PER_FRAME,
            sps: None,
            pps: None,
            mdat: Vec::new(),
            sizes: Vec::new(),
            durations: Vec::new(),
            sync: Vec::new(),
            leading_gap: 0,
            frame_start: 0,
            frame_idr: false,
        }
    }

    /// A track for samples taken from existing MP4s (`preview`'s join): their timescale, size,
    /// SPS and PPS, which every sample pushed must share.
    pub(crate) fn remux(width: u32, height: u32, timescale: u32, sps: &[u8], pps: &[u8]) -> Self {
        let mut t = AvcTrack::new(width, height, 1);
        t.media_timescale = timescale.max(1);
        t.sps = Some(sps.to_vec());
        t.pps = Some(pps.to_vec());
        t
    }

    /// One sample as it was in its file: its NAL units (no start codes, no length prefixes),
    /// duration in media ticks, and whether it is a sync (IDR) sample. In-band SPS/PPS and
    /// delimiters are dropped as in `add_nal` (the track's own are in `avcC`).
    pub(crate) fn push_sample<'a>(
        &mut self,
        nals: impl IntoIterator<Item = &'a [u8]>,
        duration: u32,
        sync: bool,
    ) {
        self.begin_frame();
        for nal in nals {
            self.add_nal(nal);
        }
        let size = (self.mdat.len() - self.frame_start) as u32;
        if size == 0 {
            return;
        }
        self.sizes.push(size);
        self.durations.push(duration);
        if sync || self.frame_idr {
            self.sync.push(self.sizes.len() as u32);
        }
    }

    /// Starts the next frame; feed its NAL units to [`Self::add_nal`], then call [`Self::end_frame`].
    pub(super) fn begin_frame(&mut self) {
        self.frame_start = self.mdat.len();
        self.frame_idr = false;
    }

    /// Adds one Annex-B NAL unit (start code optional). SPS/PPS go to `avcC`; the rest become
    /// part of the current length-prefixed sample.
    pub(super) fn add_nal(&mut self, nal: &[u8]) {
        let nal = strip_start_code(nal);
        let Some(&header) = nal.first() else { return };
        match header & 0x1f {
            7 => {
                if self.sps.is_none() {
                    self.sps = Some(nal.to_vec());
                }
            }
            8 => {
                if self.pps.is_none() {
                    self.pps = Some(nal.to_vec());
                }
            }
            9 => {} // access unit delimiter: not used in MP4
            t => {
                self.frame_idr |= t == 5;
                self.mdat
                    .extend_from_slice(&(nal.len() as u32).to_be_bytes());
                self.mdat.extend_from_slice(nal);
            }
        }
    }

    /// Closes the current frame. A frame without picture data (one the encoder skipped) lengthens
    /// the previous sample so the timeline stays exact.
    pub(super) fn end_frame(&mut self) {
        let size = (self.mdat.len() - self.frame_start) as u32;
        if size == 0 {
            match self.durations.last_mut() {
                Some(d) => *d += self.tick,
                None => self.leading_gap += self.tick,
            }
            return;
        }
        self.sizes.push(size);
        self.durations.push(self.tick);
        if self.frame_idr {
            self.sync.push(self.sizes.len() as u32);
        }
    }

    /// The complete file.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, RenderError> {
        let (Some(sps), Some(pps)) = (self.sps.take(), self.pps.take()) else {
            return Err(RenderError::Encode(
                "the encoder produced no SPS/PPS".to_string(),
            ));
        };
        if sps.len() < 4 || self.sizes.is_empty() || self.sync.first() != Some(&1) {
            return Err(RenderError::Encode(
                "the encoder did not start with a key frame".to_string(),
            ));
        }
        if let Some(first) = self.durations.first_mut() {
            *first += self.leading_gap;
        }
        let ftyp = ftyp();
        let moov_len = self.moov(&sps, &pps, 0).len();
        let data_offset = ftyp.len() + moov_len + 8;
        let total = data_offset + self.mdat.len();
        if u32::try_from(total).is_err() {
            return Err(RenderError::Encode(
                "the video is larger than 4 GiB".to_string(),
            ));
        }
        let moov = self.moov(&sps, &pps, data_offset as u32);
        let mut file = Vec::with_capacity(total);
        file.extend_from_slice(&ftyp);
        file.extend_from_slice(&moov);
        file.extend_from_slice(&((self.mdat.len() + 8) as u32).to_be_bytes());
        file.extend_from_slice(b"mdat");
        file.extend_from_slice(&self.mdat);
        Ok(file)
    }

    fn media_duration(&self) -> u64 {
        self.durations.iter().map(|&d| u64::from(d)).sum()
    }

    fn moov(&self, sps: &[u8], pps: &[u8], data_offset: u32) -> Vec<u8> {
        let media_duration = self.media_duration();
        let movie_duration =
            (media_duration * u64::from(MOVIE_TIMESCALE) / u64::from(self.media_timescale)) as u32;
        let trak = plain_box(
            b"trak",
            &[
                self.tkhd(movie_duration),
                edts(movie_duration),
                self.mdia(media_duration, sps, pps, data_offset),
            ],
        );
        plain_box(b"moov", &[mvhd(movie_duration), trak])
    }

    fn tkhd(&self, movie_duration: u32) -> Vec<u8> {
        full_box(b"tkhd", 0, 0x3, |b| {
            b.u32(0);
            b.u32(0);
            b.u32(1); // track id
            b.u32(0);
            b.u32(movie_duration);
            b.zeros(8);
            b.u16(0); // layer
            b.u16(0); // alternate group
            b.u16(0); // volume (video)
            b.u16(0);
            b.matrix();
            b.u32(self.width << 16);
            b.u32(self.height << 16);
        })
    }

    fn mdia(&self, media_duration: u64, sps: &[u8], pps: &[u8], data_offset: u32) -> Vec<u8> {
        let mdhd = full_box(b"mdhd", 0, 0, |b| {
            b.u32(0);
            b.u32(0);
            b.u32(self.media_timescale);
            b.u32(media_duration as u32);
            b.u16(0x55c4); // "und"
            b.u16(0);
        });
        let hdlr = full_box(b"hdlr", 0, 0, |b| {
            b.u32(0);
            b.bytes(b"vide");
            b.zeros(12);
            b.bytes(b"VideoHandler\0");
        });
        let vmhd = full_box(b"vmhd", 0, 1, |b| b.zeros(8));
        let minf = plain_box(b"minf", &[vmhd, dinf(), self.stbl(sps, pps, data_offset)]);
        plain_box(b"mdia", &[mdhd, hdlr, minf])
    }

    fn stbl(&self, sps: &[u8], pps: &[u8], data_offset: u32) -> Vec<u8> {
        plain_box(
            b"stbl",
            &[
                self.stsd(sps, pps),
                self.stts(),
                self.stss(),
                self.stsc(),
                self.stsz(),
                full_box(b"stco", 0, 0, |b| {
                    b.u32(1);
                    b.u32(data_offset);
                }),
            ],
        )
    }

    fn stsd(&self, sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let mut avcc = Buf::default();
        avcc.u8(1); // configurationVersion
        avcc.u8(sps[1]); // profile
        avcc.u8(sps[2]); // constraint flags
        avcc.u8(sps[3]); // level
        avcc.u8(0xff); // 4-byte NAL lengths
        avcc.u8(0xe1); // one SPS
        avcc.u16(sps.len() as u16);
        avcc.bytes(sps);
        avcc.u8(1); // one PPS
        avcc.u16(pps.len() as u16);
        avcc.bytes(pps);
        let avcc = make_box(b"avcC", &avcc.0);

        let mut colr = Buf::default();
        colr.bytes(b"nclx");
        colr.u16(1); // BT.709 primaries
        colr.u16(1); // BT.709 transfer
        colr.u16(1); // BT.709 matrix
        colr.u8(0); // limited range
        let colr = make_box(b"colr", &colr.0);

        let mut pasp = Buf::default();
        pasp.u32(1);
        pasp.u32(1);
        let pasp = make_box(b"pasp", &pasp.0);

        let mut avc1 = Buf::default();
        avc1.zeros(6);
        avc1.u16(1); // data reference index
        avc1.zeros(16); // pre_defined, reserved
        avc1.u16(self.width as u16);
        avc1.u16(self.height as u16);
        avc1.u32(0x0048_0000); // 72 dpi
        avc1.u32(0x0048_0000);
        avc1.u32(0);
        avc1.u16(1); // frames per sample
        let name = b"OpenH264";
        avc1.u8(name.len() as u8);
        avc1.bytes(name);
        avc1.zeros(31 - name.len());
        avc1.u16(0x0018); // depth
        avc1.u16(0xffff); // pre_defined = -1
        avc1.bytes(&avcc);
        avc1.bytes(&colr);
        avc1.bytes(&pasp);
        let avc1 = make_box(b"avc1", &avc1.0);

        full_box(b"stsd", 0, 0, |b| {
            b.u32(1);
            b.bytes(&avc1);
        })
    }

    fn stts(&self) -> Vec<u8> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &d in &self.durations {
            match runs.last_mut() {
                Some((count, delta)) if *delta == d => *count += 1,
                _ => runs.push((1, d)),
            }
        }
        full_box(b"stts", 0, 0, |b| {
            b.u32(runs.len() as u32);
            for (count, delta) in &runs {
                b.u32(*count);
                b.u32(*delta);
            }
        })
    }

    fn stss(&self) -> Vec<u8> {
        full_box(b"stss", 0, 0, |b| {
            b.u32(self.sync.len() as u32);
            for &s in &self.sync {
                b.u32(s);
            }
        })
    }

    fn stsc(&self) -> Vec<u8> {
        full_box(b"stsc", 0, 0, |b| {
            b.u32(1);
            b.u32(1); // first chunk
            b.u32(self.sizes.len() as u32); // samples per chunk
            b.u32(1); // sample description index
        })
    }

    fn stsz(&self) -> Vec<u8> {
        full_box(b"stsz", 0, 0, |b| {
            b.u32(0); // sizes vary
            b.u32(self.sizes.len() as u32);
            for &s in &self.sizes {
                b.u32(s);
            }
        })
    }
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        nal
    }
}

fn mvhd(movie_duration: u32) -> Vec<u8> {
    full_box(b"mvhd", 0, 0, |b| {
        b.u32(0); // creation time
        b.u32(0); // modification time
        b.u32(MOVIE_TIMESCALE);
        b.u32(movie_duration);
        b.u32(0x0001_0000); // rate 1.0
        b.u16(0x0100); // volume 1.0
        b.zeros(10);
        b.matrix();
        b.zeros(24); // pre_defined
        b.u32(2); // next track id
    })
}

/// One edit covering the whole movie, from media time 0 at rate 1.
fn edts(movie_duration: u32) -> Vec<u8> {
    let elst = full_box(b"elst", 0, 0, |b| {
        b.u32(1);
        b.u32(movie_duration);
        b.u32(0); // media time
        b.u32(0x0001_0000); // rate 1.0
    });
    plain_box(b"edts", &[elst])
}

/// The data is in this file (one self-contained `url ` entry).
fn dinf() -> Vec<u8> {
    let url = full_box(b"url ", 0, 1, |_| {});
    let dref = full_box(b"dref", 0, 0, |b| {
        b.u32(1);
        b.bytes(&url);
    });
    plain_box(b"dinf", &[dref])
}

fn ftyp() -> Vec<u8> {
    let mut b = Buf::default();
    b.bytes(b"isom");
    b.u32(0x200);
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        b.bytes(brand);
    }
    make_box(b"ftyp", &b.0)
}

#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }
    /// Identity transformation matrix.
    fn matrix(&mut self) {
        for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
            self.u32(v);
        }
    }
}

fn make_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

fn plain_box(kind: &[u8; 4], children: &[Vec<u8>]) -> Vec<u8> {
    make_box(kind, &children.concat())
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Buf)) -> Vec<u8> {
    let mut b = Buf::default();
    b.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    body(&mut b);
    make_box(kind, &b.0)
}

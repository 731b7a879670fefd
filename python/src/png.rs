//! A picture (SVG text) as PNG: drawn by resvg, its text set in DejaVu Sans, which is embedded
//! (the `dejavu` crate; the DejaVu fonts' licence is free, Bitstream Vera's), so that every
//! machine draws the same pixels: no system font is ever read.

use std::sync::{Arc, OnceLock};

use miette::Diagnostic;
use resvg::{tiny_skia, usvg};
use thiserror::Error;

/// No side of a PNG is drawn longer than this many pixels.
pub const MAX_SIDE: u32 = 16_384;

/// Why a picture cannot be drawn.
#[derive(Clone, Debug, PartialEq, Eq, Error, Diagnostic)]
pub enum PictureError {
    #[error("the picture is not SVG that can be drawn: {message}")]
    #[diagnostic(help("give `render_png` the SVG text of a picture, such as `mgc.explain(plan)[\"svg\"]`"))]
    NotSvg { message: String },
    #[error("the scale {scale} is not a number above 0")]
    #[diagnostic(help("give `scale` a number above 0: 1.0 draws the picture at its own size, 2.0 twice as wide"))]
    BadScale { scale: String },
    #[error("the picture at scale {scale} would be {width} x {height} pixels; no side may be over {MAX_SIDE}")]
    #[diagnostic(help("give a smaller `scale`"))]
    TooLarge { scale: String, width: String, height: String },
    #[error("cannot encode the picture as PNG: {message}")]
    Encode { message: String },
}

/// The embedded fonts, every generic family (`sans-serif`, `serif`, `monospace`, ...) set to
/// DejaVu Sans; loaded once.
fn fonts() -> Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_font_data(dejavu::sans::regular().to_vec());
            db.load_font_data(dejavu::sans::bold().to_vec());
            let family = "DejaVu Sans";
            db.set_sans_serif_family(family);
            db.set_serif_family(family);
            db.set_monospace_family(family);
            db.set_cursive_family(family);
            db.set_fantasy_family(family);
            Arc::new(db)
        })
        .clone()
}

/// The PNG of the SVG text `svg`, drawn at `scale` times its size (its `width` and `height`).
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>, PictureError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(PictureError::BadScale { scale: scale.to_string() });
    }
    let options = usvg::Options { font_family: "DejaVu Sans".to_owned(), fontdb: fonts(), ..usvg::Options::default() };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| PictureError::NotSvg { message: e.to_string() })?;
    let size = tree.size();
    let (width, height) = (f64::from(size.width() * scale).ceil(), f64::from(size.height() * scale).ceil());
    if width > f64::from(MAX_SIDE) || height > f64::from(MAX_SIDE) {
        let (width, height) = (format!("{width:.0}"), format!("{height:.0}"));
        return Err(PictureError::TooLarge { scale: scale.to_string(), width, height });
    }
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "between 0 and MAX_SIDE")]
    let pixmap = tiny_skia::Pixmap::new(width as u32, height as u32);
    let Some(mut pixmap) = pixmap else {
        return Err(PictureError::NotSvg { message: "it has no area to draw".to_owned() });
    };
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| PictureError::Encode { message: e.to_string() })
}

//! A receipt drawn as a black-and-white raster at the printer's width.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (the `dejavu`
//! crate: every Vietnamese letter, precomposed; no font file to install
//! on a counter's PC), through `ab_glyph`'s rasteriser. Every pixel is then
//! black or white (coverage of one half or more is black), as a thermal
//! printer prints it, so the PNG and the printed raster are the same
//! image.

use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont, point};

use super::{Line, Paper, Receipt, Style};

/// Paper feeds this many dots on the left and right of the text.
const MARGIN_DOTS: u32 = 8;

/// A one-bit image, one byte a pixel (0: black, 255: white) for simple
/// encoders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Raster {
    pub fn is_black(&self, x: u32, y: u32) -> bool {
        self.pixels[(y * self.width + x) as usize] == 0
    }

    /// Rows `top..top + rows` as a raster of their own.
    pub fn band(&self, top: u32, rows: u32) -> Raster {
        let rows = rows.min(self.height - top);
        let start = (top * self.width) as usize;
        Raster {
            width: self.width,
            height: rows,
            pixels: self.pixels[start..start + (rows * self.width) as usize].to_vec(),
        }
    }

    /// An 8-bit greyscale PNG of it.
    pub fn png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().expect("PNG into memory");
            writer
                .write_image_data(&self.pixels)
                .expect("PNG into memory");
        }
        out
    }

    /// A PNG read back (8-bit greyscale or RGB(A)), thresholded at half.
    pub fn from_png(bytes: &[u8]) -> Result<Raster, String> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
        let channels = info.color_type.samples();
        let pixels = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|p| if p[0] < 128 { 0 } else { 255 })
            .collect();
        Ok(Raster {
            width: info.width,
            height: info.height,
            pixels,
        })
    }
}

/// Coverage accumulated while drawing, rows added as the receipt grows.
struct Canvas {
    width: u32,
    coverage: Vec<f32>,
}

impl Canvas {
    fn rows(&self) -> u32 {
        (self.coverage.len() / self.width as usize) as u32
    }

    fn grow_to(&mut self, rows: u32) {
        if rows > self.rows() {
            self.coverage.resize((rows * self.width) as usize, 0.0);
        }
    }

    fn ink(&mut self, x: i64, y: i64, c: f32) {
        if x < 0 || y < 0 || x >= i64::from(self.width) {
            return;
        }
        self.grow_to(y as u32 + 1);
        let i = (y as u32 * self.width + x as u32) as usize;
        self.coverage[i] = (self.coverage[i] + c).min(1.0);
    }

    fn fill(&mut self, x0: u32, y0: u32, x1: u32, y1: u32) {
        for y in y0..y1 {
            for x in x0..x1.min(self.width) {
                self.ink(i64::from(x), i64::from(y), 1.0);
            }
        }
    }
}

/// Sizes in pixels for one paper width.
struct Sizes {
    title: f32,
    body: f32,
    small: f32,
    qr_module: u32,
}

fn sizes(paper: Paper) -> Sizes {
    match paper {
        Paper::Mm58 => Sizes {
            title: 24.0,
            body: 20.0,
            small: 16.0,
            qr_module: 4,
        },
        Paper::Mm80 => Sizes {
            title: 30.0,
            body: 25.0,
            small: 20.0,
            qr_module: 5,
        },
    }
}

struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

fn fonts() -> Fonts {
    Fonts {
        regular: FontRef::try_from_slice(dejavu::sans::regular()).expect("DejaVu Sans parses"),
        bold: FontRef::try_from_slice(dejavu::sans::bold()).expect("DejaVu Sans Bold parses"),
    }
}

/// The advance of `text` at `px`.
fn text_width(font: &FontRef<'_>, px: f32, text: &str) -> f32 {
    let scaled = font.as_scaled(PxScale::from(px));
    let mut width = 0.0;
    let mut previous: Option<GlyphId> = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    width
}

/// Draw `text` with its baseline at `baseline` from `x`.
fn draw_text(canvas: &mut Canvas, font: &FontRef<'_>, px: f32, text: &str, x: f32, baseline: f32) {
    let scaled = font.as_scaled(PxScale::from(px));
    let mut caret = x;
    let mut previous: Option<GlyphId> = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(px, point(caret, baseline));
        if let Some(outlined) = font.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            outlined.draw(|gx, gy, c| {
                canvas.ink(
                    bounds.min.x as i64 + i64::from(gx),
                    bounds.min.y as i64 + i64::from(gy),
                    c,
                );
            });
        }
        caret += scaled.h_advance(id);
        previous = Some(id);
    }
}

/// `text` broken at spaces into lines no wider than `max` (a word wider
/// than `max` is broken between characters).
fn wrap(font: &FontRef<'_>, px: f32, text: &str, max: f32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let candidate = if current.is_empty() {
            word.to_string()
        } else {
            format!("{current} {word}")
        };
        if text_width(font, px, &candidate) <= max {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        // The word alone, broken if it must be.
        for c in word.chars() {
            let mut next = current.clone();
            next.push(c);
            if !current.is_empty() && text_width(font, px, &next) > max {
                lines.push(std::mem::replace(&mut current, c.to_string()));
            } else {
                current = next;
            }
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

/// Draws lines top to bottom.
struct Layout {
    canvas: Canvas,
    fonts: Fonts,
    sizes: Sizes,
    /// The top of the next line.
    y: f32,
}

impl Layout {
    fn usable(&self) -> f32 {
        (self.canvas.width - 2 * MARGIN_DOTS) as f32
    }

    fn line_height(&self, font: &FontRef<'_>, px: f32) -> f32 {
        let s = font.as_scaled(PxScale::from(px));
        (s.ascent() - s.descent() + s.line_gap()).ceil()
    }

    /// One line of text at `x` (None: centred).
    fn text(&mut self, bold: bool, px: f32, text: &str, x: Option<f32>) {
        let font = if bold {
            &self.fonts.bold
        } else {
            &self.fonts.regular
        };
        let ascent = font.as_scaled(PxScale::from(px)).ascent();
        let height = self.line_height(font, px);
        let x = x.unwrap_or_else(|| {
            MARGIN_DOTS as f32 + ((self.usable() - text_width(font, px, text)) / 2.0).max(0.0)
        });
        draw_text(&mut self.canvas, font, px, text, x, self.y + ascent);
        self.y += height;
        self.canvas.grow_to(self.y as u32);
    }

    fn wrapped(&mut self, bold: bool, px: f32, text: &str, centred: bool) {
        let font = if bold {
            &self.fonts.bold
        } else {
            &self.fonts.regular
        };
        let lines = wrap(font, px, text, self.usable());
        for l in lines {
            let x = (!centred).then_some(MARGIN_DOTS as f32);
            self.text(bold, px, &l, x);
        }
    }

    /// A label on the left, its value on the right; a value that does not
    /// fit beside the label goes on the lines below, right-aligned.
    fn pair(&mut self, bold: bool, label: &str, value: &str) {
        let px = self.sizes.body;
        let font = &if bold {
            self.fonts.bold.clone()
        } else {
            self.fonts.regular.clone()
        };
        let gap = px;
        let label_w = text_width(font, px, label);
        let value_w = text_width(font, px, value);
        let right = (self.canvas.width - MARGIN_DOTS) as f32;
        if label_w + gap + value_w <= self.usable() {
            let ascent = font.as_scaled(PxScale::from(px)).ascent();
            let (y, height) = (self.y + ascent, self.line_height(font, px));
            draw_text(&mut self.canvas, font, px, label, MARGIN_DOTS as f32, y);
            draw_text(&mut self.canvas, font, px, value, right - value_w, y);
            self.y += height;
            self.canvas.grow_to(self.y as u32);
            return;
        }
        self.text(bold, px, label, Some(MARGIN_DOTS as f32));
        let lines = wrap(font, px, value, self.usable());
        for l in lines {
            let x = right - text_width(font, px, &l);
            self.text(bold, px, &l, Some(x));
        }
    }

    fn rule(&mut self) {
        let y = (self.y + 6.0) as u32;
        let (x0, x1) = (MARGIN_DOTS, self.canvas.width - MARGIN_DOTS);
        // Dashed: 6 dots on, 4 off.
        let mut x = x0;
        while x < x1 {
            self.canvas.fill(x, y, (x + 6).min(x1), y + 2);
            x += 10;
        }
        self.y += 14.0;
        self.canvas.grow_to(self.y as u32);
    }

    fn signature(&mut self, caption: &str) {
        self.y += 8.0;
        self.text(false, self.sizes.body, caption, None);
        self.y += 64.0;
        let width = self.canvas.width;
        let y = self.y as u32;
        self.canvas.fill(width / 6, y, width - width / 6, y + 2);
        self.y += 12.0;
        self.canvas.grow_to(self.y as u32);
    }

    fn qr(&mut self, data: &str) {
        let Ok(code) = qrcode::QrCode::new(data.as_bytes()) else {
            // An id too long for a code is printed as text above already.
            return;
        };
        let modules = code.width() as u32;
        let m = self.sizes.qr_module;
        let size = modules * m;
        let x0 = (self.canvas.width.saturating_sub(size)) / 2;
        let y0 = (self.y + 8.0) as u32;
        let colors = code.to_colors();
        for (i, c) in colors.iter().enumerate() {
            if *c == qrcode::Color::Dark {
                let (mx, my) = (i as u32 % modules, i as u32 / modules);
                self.canvas.fill(
                    x0 + mx * m,
                    y0 + my * m,
                    x0 + (mx + 1) * m,
                    y0 + (my + 1) * m,
                );
            }
        }
        self.y = (y0 + size + 8) as f32;
        self.canvas.grow_to(self.y as u32);
    }

    fn line(&mut self, l: &Line) {
        let (title, body, small) = (self.sizes.title, self.sizes.body, self.sizes.small);
        match l.style {
            Style::Title => self.wrapped(true, title, &l.left, true),
            Style::Centre => self.wrapped(false, body, &l.left, true),
            Style::Small => self.wrapped(false, small, &l.left, false),
            Style::Pair => self.pair(false, &l.left, &l.right),
            Style::Strong => self.pair(true, &l.left, &l.right),
            Style::Rule => self.rule(),
            Style::Signature => self.signature(&l.left),
            Style::Qr => self.qr(&l.left),
        }
    }
}

/// Draw `receipt` at `paper`'s width.
pub fn render(receipt: &Receipt, paper: Paper) -> Raster {
    let width = paper.width_dots();
    let mut layout = Layout {
        canvas: Canvas {
            width,
            coverage: Vec::new(),
        },
        fonts: fonts(),
        sizes: sizes(paper),
        y: MARGIN_DOTS as f32,
    };
    for l in &receipt.lines {
        layout.line(l);
    }
    // A little paper below the last line.
    let height = layout.y as u32 + MARGIN_DOTS;
    layout.canvas.grow_to(height);
    let coverage = &layout.canvas.coverage[..(height * width) as usize];
    Raster {
        width,
        height,
        pixels: coverage
            .iter()
            .map(|&c| if c >= 0.5 { 0 } else { 255 })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_wraps_at_spaces_and_long_words_break() {
        let f = fonts();
        let lines = wrap(&f.regular, 20.0, "Năm trăm linh ba nghìn đồng", 120.0);
        assert!(lines.len() > 1, "{lines:?}");
        assert_eq!(lines.join(" "), "Năm trăm linh ba nghìn đồng");
        for l in &lines {
            assert!(text_width(&f.regular, 20.0, l) <= 120.0, "{l}");
        }
        let id = "01a2330000000000000000000000ab00";
        let broken = wrap(&f.regular, 20.0, id, 100.0);
        assert!(broken.len() > 1);
        assert_eq!(broken.concat(), id);
    }

    #[test]
    fn every_vietnamese_letter_has_a_glyph() {
        let f = fonts();
        let letters = "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬĐÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴ\
                       àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ₫";
        for font in [&f.regular, &f.bold] {
            for c in letters.chars() {
                assert_ne!(font.glyph_id(c).0, 0, "no glyph for {c}");
            }
        }
    }
}

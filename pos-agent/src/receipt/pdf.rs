//! A receipt as a one-page PDF, for a reprint on an office printer or the
//! console: the printed raster itself as a one-bit image on a page the
//! paper's width (203 dots an inch), written with `pdf-writer`.

use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref};

use super::render::Raster;

/// A thermal printer's resolution.
const DOTS_PER_INCH: f32 = 203.0;

/// The PDF of `raster`.
pub fn pdf(raster: &Raster) -> Vec<u8> {
    let (catalog, pages, page, image, content) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
    );
    let points = |dots: u32| dots as f32 * 72.0 / DOTS_PER_INCH;
    let (w, h) = (points(raster.width), points(raster.height));
    let name = Name(b"Receipt");

    let mut doc = Pdf::new();
    doc.catalog(catalog).pages(pages);
    doc.pages(pages).kids([page]).count(1);
    let mut p = doc.page(page);
    p.media_box(Rect::new(0.0, 0.0, w, h))
        .parent(pages)
        .contents(content);
    p.resources().x_objects().pair(name, image);
    p.finish();

    // One bit a pixel, rows padded to whole bytes; 0 is black in DeviceGray.
    let row_bytes = raster.width.div_ceil(8) as usize;
    let mut bits = vec![0u8; row_bytes * raster.height as usize];
    for y in 0..raster.height {
        for x in 0..raster.width {
            if !raster.is_black(x, y) {
                bits[y as usize * row_bytes + x as usize / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&bits, 6);
    let mut x = doc.image_xobject(image, &compressed);
    x.filter(Filter::FlateDecode);
    x.width(raster.width as i32);
    x.height(raster.height as i32);
    x.color_space().device_gray();
    x.bits_per_component(1);
    x.finish();

    let mut c = Content::new();
    c.save_state();
    c.transform([w, 0.0, 0.0, h, 0.0, 0.0]);
    c.x_object(name);
    c.restore_state();
    doc.stream(content, &c.finish());
    doc.finish()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let im = image::open(&a[1]).unwrap();
    let n = |i: usize| a[i].parse::<u32>().unwrap();
    let c = im.crop_imm(n(3), n(4), n(5), n(6));
    let f = n(7);
    c.resize(c.width() * f, c.height() * f, image::imageops::FilterType::Nearest).save(&a[2]).unwrap();
}

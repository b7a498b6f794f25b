// Shared helper (included, not an op): sin and cos of an f32 angle to about 1 ulp, independent
// of the adapter's own sin/cos (which WebGPU lets be as coarse as 2^-11 absolute, and worse
// for large arguments). Cody-Waite reduction by pi/2 with 7-bit pieces (k * piece is exact for
// |k| < 2^17, i.e. |a| < 2e5 rad), then cephes' sinf/cosf polynomials on [-pi/4, pi/4].

const PIO2_1: f32 = 1.5625;                 // 7 significant bits of pi/2
const PIO2_2: f32 = 0.0081787109375;        // next 7 bits
const PIO2_3: f32 = 0.00011730194091796875; // next 7 bits
const PIO2_4: f32 = 3.1391647e-7;           // the rest

// (sin a, cos a)
fn sincos(a: f32) -> vec2<f32> {
    let k = round(a * 0.63661977236758134);
    var r = a - k * PIO2_1;
    r = r - k * PIO2_2;
    r = r - k * PIO2_3;
    r = r - k * PIO2_4;
    let z = r * r;
    let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
    let q = ((i32(k) % 4) + 4) % 4;
    switch q {
        case 0: { return vec2<f32>(s, c); }
        case 1: { return vec2<f32>(c, -s); }
        case 2: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

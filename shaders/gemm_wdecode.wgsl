// Shared by gemm_dequant.wgsl and gather_rows.wgsl (included): one weight W[r][c] of any
// format from its on-disk segments (docs/FORMAT.md), chosen by the FORMAT override.
// The including shader declares `params` (with cols, group) and the bindings
// wq: array<vec4<u32>> (w or q), wscales: array<u32> (int8: f32 bits, int4: f16 pairs) and
// wmins: array<u32> (int4 asym: f16 pairs). Ternary yields the code's value -1/0/+1 (the
// caller applies the tensor scale).

const F_F32: u32 = 0u;
const F_F16: u32 = 1u;
const F_INT8: u32 = 2u;
const F_INT4: u32 = 3u;
const F_TERNARY: u32 = 4u;

override FORMAT: u32 = 0u;
override SYM: bool = true;   // int4: symmetric (no mins)

fn w_word(i: u32) -> u32 {
    return wq[i / 4u][i % 4u];
}

fn w_at(r: u32, c: u32) -> f32 {
    let e = r * params.cols + c;
    switch FORMAT {
        case 0u: {
            return bitcast<f32>(w_word(e));
        }
        case 1u: {
            return unpack2x16float(w_word(e / 2u))[e % 2u];
        }
        case 2u: {
            let b = (w_word(e / 4u) >> (8u * (e % 4u))) << 24u;
            return f32(bitcast<i32>(b) >> 24u) * bitcast<f32>(wscales[r]);
        }
        case 3u: {
            let nib = f32((w_word(e / 8u) >> (4u * (e % 8u))) & 15u);
            let g = e / params.group;
            let s = unpack2x16float(wscales[g / 2u])[g % 2u];
            if (SYM) {
                return (nib - 8.0) * s;
            }
            return nib * s + unpack2x16float(wmins[g / 2u])[g % 2u];
        }
        default: {
            let wpr = (params.cols + 15u) / 16u;
            let code = (w_word(r * wpr + c / 16u) >> (2u * (c % 16u))) & 3u;
            return f32(code) - 1.0;
        }
    }
}

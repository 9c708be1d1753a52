//! A trained model as a Hugging Face folder (`model.safetensors` in f32, `config.json`,
//! `tokenizer.json`, `tokenizer_config.json`), which Wick loads like any other float folder and
//! `wick quantize` turns into MLX-quantized weights; and the loss curve as a small SVG.

use candle_core::{DType, Var};

use super::bpe;
use crate::error::{Error, Result};
use crate::model::Config;
use crate::quantize::{hf_config, tokenizer_config};
use crate::tokenizer::Tokenizer;
use crate::weights::folder;
use crate::weights::safetensors::Writer;

/// The folder's files, `(name, bytes)`: the weights under their Hugging Face names (the
/// embedding is tied, so there is no `lm_head`), and the configuration that describes them.
pub fn folder(
    cfg: &Config,
    vars: &[(String, Var)],
    tokenizer: &Tokenizer,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut w = Writer::default();
    for (name, var) in vars {
        let values: Vec<f32> = var.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        w.add_f32(name, var.dims().to_vec(), &values);
    }
    w.metadata("format", "pt");
    let json = |v: &serde_json::Value| -> Result<Vec<u8>> {
        let mut s = serde_json::to_string_pretty(v)
            .map_err(|e| Error::Train(format!("cannot write JSON: {e}")))?;
        s.push('\n');
        Ok(s.into_bytes())
    };
    Ok(vec![
        (folder::WEIGHTS.into(), w.to_bytes()),
        (
            folder::CONFIG.into(),
            json(&hf_config(cfg, true, tokenizer, None)?)?,
        ),
        (folder::TOKENIZER.into(), tokenizer.to_json()?.into_bytes()),
        (
            folder::TOKENIZER_CONFIG.into(),
            json(&tokenizer_config(tokenizer, Some(bpe::CHAT_TEMPLATE)))?,
        ),
    ])
}

/// The loss of every step as a self-contained SVG line chart (numbers only, no text from the
/// corpus): steps across, loss up, with the first and last values and the range labelled.
pub fn loss_svg(losses: &[f32]) -> String {
    let (w, h, left, right, top, bottom) = (480.0, 240.0, 48.0, 12.0, 24.0, 28.0);
    let finite: Vec<f32> = losses.iter().copied().filter(|l| l.is_finite()).collect();
    let lo = finite.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (lo, hi) = if lo.is_finite() {
        (lo, hi.max(lo + 1e-3))
    } else {
        (0.0, 1.0)
    };
    let n = losses.len().max(2) - 1;
    let x = |i: usize| left + (w - left - right) * i as f32 / n as f32;
    let y = |l: f32| top + (h - top - bottom) * (hi - l) / (hi - lo);
    let points: Vec<String> = losses
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| format!("{:.1},{:.1}", x(i), y(l)))
        .collect();
    let (first, last) = (
        losses.first().copied().unwrap_or(f32::NAN),
        losses.last().copied().unwrap_or(f32::NAN),
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">
<rect width="{w}" height="{h}" fill="#fff"/>
<text x="{left}" y="15">training loss: {first:.3} → {last:.3} over {steps} steps</text>
<line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="#888"/>
<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/>
<text x="{lx}" y="{ty}" text-anchor="end">{hi:.2}</text>
<text x="{lx}" y="{b}" text-anchor="end">{lo:.2}</text>
<text x="{left}" y="{sy}">1</text>
<text x="{r}" y="{sy}" text-anchor="end">{steps}</text>
<polyline fill="none" stroke="#2a6fdb" stroke-width="1.5" points="{points}"/>
</svg>
"##,
        steps = losses.len(),
        b = h - bottom,
        r = w - right,
        lx = left - 4.0,
        ty = top + 4.0,
        sy = h - bottom + 14.0,
        points = points.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn loss_svg_plots_every_finite_step() {
        let svg = loss_svg(&[5.0, 4.0, f32::NAN, 3.0]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("training loss: 5.000 → 3.000 over 4 steps"));
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 3);
        // The highest loss is at the top of the plot, the lowest at the bottom.
        assert!(points.starts_with("48.0,24.0 "));
        assert!(points.ends_with(",212.0"));
        assert!(loss_svg(&[]).contains("over 0 steps"));
    }
}

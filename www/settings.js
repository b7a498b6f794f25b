// Generation settings and the chosen backend and model, kept in localStorage (this browser only).
// URL parameters (`?backend=`, `?model=`) win over what is stored, so a link opens what it names.

const KEY = 'webvlm.settings';
export const BACKENDS = ['auto', 'webgpu', 'cpu'];
const DEFAULTS = { temperature: 0, top_p: 0.9, max_tokens: 256, backend: 'auto', model: null };

/** Stored settings merged over the defaults (bad or missing storage gives the defaults). */
export function loadSettings() {
  let stored = {};
  try {
    stored = JSON.parse(localStorage.getItem(KEY) || '{}') || {};
  } catch {
    stored = {};
  }
  const s = { ...DEFAULTS, ...stored };
  if (!BACKENDS.includes(s.backend)) s.backend = DEFAULTS.backend;
  return s;
}

/** Merge `patch` into the stored settings. */
export function saveSettings(patch) {
  try {
    localStorage.setItem(KEY, JSON.stringify({ ...loadSettings(), ...patch }));
  } catch {
    // Storage off (private mode, quota): settings last for this page only.
  }
}

const clamp = (v, lo, hi, dflt) => {
  const n = Number(v);
  return Number.isFinite(n) && String(v).trim() !== '' ? Math.max(lo, Math.min(hi, n)) : dflt;
};

/** The sampling inputs' values, clamped to their ranges. */
export function readParams(ui) {
  return {
    max_tokens: Math.round(clamp(ui.maxTokens.value, 1, 4096, DEFAULTS.max_tokens)),
    temperature: clamp(ui.temperature.value, 0, 2, DEFAULTS.temperature),
    top_p: clamp(ui.topP.value, 0.05, 1, DEFAULTS.top_p),
  };
}

/** Fill the settings inputs from storage and save each change. */
export function bindSettings(ui) {
  const s = loadSettings();
  ui.temperature.value = String(s.temperature);
  ui.topP.value = String(s.top_p);
  ui.maxTokens.value = String(s.max_tokens);
  for (const input of [ui.temperature, ui.topP, ui.maxTokens]) {
    input.addEventListener('input', () => saveSettings(readParams(ui)));
  }
}

/** The backend to load: `?backend=` when valid, else the stored one. */
export function initialBackend() {
  const b = new URLSearchParams(location.search).get('backend');
  return BACKENDS.includes(b) ? b : loadSettings().backend;
}

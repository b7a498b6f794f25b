// Sample images for models that list them in models.json (`samples: [{ image, question }]`): a row
// of buttons under the composer; picking one attaches the image (fetched from this site, like any
// page file) and puts its question in the message box, ready to send or edit.

/** Render `samples` into `list` (a <ul>); `onPick(file, question)` is called with the fetched image. */
export function renderSamples(container, list, samples, onPick) {
  list.replaceChildren();
  container.hidden = !samples?.length;
  for (const [i, s] of (samples || []).entries()) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'sample';
    button.title = s.question;
    button.setAttribute('aria-label', `Sample image ${i + 1}: ask "${s.question}"`);
    const img = document.createElement('img');
    img.src = s.image;
    img.alt = '';
    button.append(img);
    button.addEventListener('click', async () => {
      const resp = await fetch(s.image);
      if (!resp.ok) throw new Error(`sample image ${s.image}: HTTP ${resp.status}`);
      const blob = await resp.blob();
      const name = s.image.split('/').pop();
      onPick(new File([blob], name, { type: blob.type || 'image/png' }), s.question);
    });
    li.append(button);
    list.append(li);
  }
}

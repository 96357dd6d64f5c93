// Building page content without innerHTML (no markup from data ever reaches the DOM as markup).

/** An element with properties and children: el("td", { className: "num", textContent: "3" }). */
export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** Replaces a <select>'s options with [value, label] pairs, keeping the chosen value when it is still there. */
export function fillSelect(select, options) {
  const chosen = [...select.selectedOptions].map((o) => o.value);
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, textContent: label })));
  for (const option of select.options) option.selected = chosen.includes(option.value);
}

// Render $...$ and $$...$$ (marked up by pymdownx.arithmatex in generic mode) with the KaTeX
// copy that `medai site build` vendors into the site: no CDN, works on an offline intranet.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});

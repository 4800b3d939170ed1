// Render the equations that pymdownx.arithmatex (generic mode) leaves as \( \) and \[ \] inside
// elements of class "arithmatex", and nothing else (a "$" in prose stays a dollar sign).
// Material's document$ fires on every page load, including pages reached by instant navigation.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false, // a bad equation shows as a red .katex-error, which the browser test looks for
    });
  }
});

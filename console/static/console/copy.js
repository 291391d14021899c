// The copy button of a secret shown once: copies the field it names to the clipboard. The page
// works without it (the field is selectable); the button is shown only when this runs.
document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
  var field = document.getElementById(button.dataset.copy);
  if (!field || !navigator.clipboard) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () {
      button.textContent = "Copied";
    }, function () {
      field.select();
      button.textContent = "Press Ctrl+C to copy";
    });
  });
});

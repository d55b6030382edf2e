// What every dashboard page shares (loaded by templates/base.html): Copy buttons, confirmations before destructive
// buttons, and focus on a secret shown once. Every page works without it.
//   <button data-copy="ID">   copies the element's value (an input) or its text
//   <button data-confirm="…"> asks before its form is sent
//   #shown-once               takes the focus, so a screen reader reads the secret first
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var shown = document.getElementById(button.dataset.copy);
      var text = "value" in shown ? shown.value : shown.textContent;
      function selectIt() {  // no clipboard outside HTTPS: select the text for Ctrl+C
        if ("select" in shown) {
          shown.focus();
          shown.select();
        } else {
          var range = document.createRange();
          range.selectNodeContents(shown);
          window.getSelection().removeAllRanges();
          window.getSelection().addRange(range);
        }
        button.textContent = "Selected: press Ctrl+C";
      }
      if (!navigator.clipboard) { selectIt(); return; }
      navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; }, selectIt);
    });
  });
  document.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.dataset.confirm)) { event.preventDefault(); }
    });
  });
  var shownOnce = document.getElementById("shown-once");
  if (shownOnce) { shownOnce.focus(); }
})();

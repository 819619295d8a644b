// The 表示 (show) checkbox of password fields. Without JavaScript the checkbox stays hidden
// and the field stays masked.
document.querySelectorAll("input[data-reveal]").forEach(function (cb) {
  var field = document.getElementById(cb.getAttribute("data-reveal"));
  if (!field) return;
  cb.parentElement.hidden = false;
  cb.checked = false;
  cb.addEventListener("change", function () {
    field.type = cb.checked ? "text" : "password";
  });
});

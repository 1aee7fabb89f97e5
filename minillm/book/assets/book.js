// The book's behaviour, shared by every page: the chapter list open beside the text on wide
// screens (folded under a "Chapters" summary on narrow ones), folding all code at once, and
// search over window.BOOK_SEARCH (search.js, written at book time: no server, no fetch()).
(function () {
  var wide = window.matchMedia('(min-width: 1000px)');
  function openToc() {
    document.querySelectorAll('details.book-toc').forEach(function (d) { d.open = wide.matches; });
  }
  openToc();
  wide.addEventListener('change', openToc);

  var toggle = document.getElementById('book-code-toggle');
  if (toggle) {
    toggle.addEventListener('click', function () {
      var fold = toggle.textContent.indexOf('Fold') === 0;
      document.querySelectorAll('details.book-code').forEach(function (d) { d.open = !fold; });
      toggle.textContent = fold ? 'Unfold all code' : 'Fold all code';
    });
  }

  var input = document.getElementById('book-search');
  var list = document.getElementById('book-results');
  if (!input || !list) return;

  function score(entry, words) {
    var head = (entry.c + ' ' + entry.h).toLowerCase(), text = entry.x.toLowerCase(), total = 0;
    for (var i = 0; i < words.length; i++) {
      var inHead = head.indexOf(words[i]) >= 0, inText = text.indexOf(words[i]) >= 0;
      if (!inHead && !inText) return 0;  // every word must occur
      total += (inHead ? 10 : 0) + (inText ? 1 : 0);
    }
    return total;
  }

  function snippet(text, word) {
    var at = Math.max(0, text.toLowerCase().indexOf(word) - 60);
    if (at > 0) at = text.indexOf(' ', at) + 1;  // start on a word
    return (at > 0 ? '… ' : '') + text.slice(at, at + 160) + (at + 160 < text.length ? ' …' : '');
  }

  function show() {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    list.textContent = '';
    if (!words.length) { list.hidden = true; return; }
    var hits = (window.BOOK_SEARCH || []).map(function (e) { return [score(e, words), e]; })
      .filter(function (h) { return h[0] > 0; })
      .sort(function (a, b) { return b[0] - a[0]; }).slice(0, 12);
    if (!hits.length) {
      var none = document.createElement('li');
      none.textContent = 'Nothing found for "' + input.value + '"';
      list.appendChild(none);
    }
    hits.forEach(function (hit) {
      var e = hit[1], li = document.createElement('li'), a = document.createElement('a');
      var where = document.createElement('small'), what = document.createElement('span');
      a.href = e.p + (e.a ? '#' + e.a : '');
      where.textContent = e.h === e.c ? '' : e.c;  // the chapter, above a section's heading
      what.textContent = e.h;
      a.appendChild(where); a.appendChild(what);
      li.appendChild(a);
      if (e.x) {
        var p = document.createElement('p');
        p.textContent = snippet(e.x, words[0]);
        li.appendChild(p);
      }
      list.appendChild(li);
    });
    list.hidden = false;
  }

  input.addEventListener('input', show);
  input.addEventListener('keydown', function (event) {
    var first = list.querySelector('a');
    if (event.key === 'Enter' && first) window.location.href = first.href;
    if (event.key === 'Escape') { input.value = ''; show(); }
  });
})();

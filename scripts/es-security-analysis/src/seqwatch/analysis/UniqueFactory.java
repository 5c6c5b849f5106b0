package seqwatch.analysis;

import java.io.IOException;
import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;

/** `unique` (only_on_same_position false): drops a term seen earlier in the stream. Test-only (see README.md). */
@NamedComponent("unique")
public class UniqueFactory implements TokenFilterFactory {
    @Override
    public TokenStream create(TokenStream input) {
        return new TokenFilter(input) {
            private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
            private final CharArraySet seen = new CharArraySet(8, false);

            @Override
            public boolean incrementToken() throws IOException {
                while (input.incrementToken()) {
                    char[] copy = new char[term.length()];
                    System.arraycopy(term.buffer(), 0, copy, 0, term.length());
                    if (seen.add(copy)) {
                        return true;
                    }
                }
                return false;
            }

            @Override
            public void reset() throws IOException {
                super.reset();
                seen.clear();
            }
        };
    }
}

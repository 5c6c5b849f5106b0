package seqwatch.analysis;

import org.apache.lucene.analysis.LowerCaseFilter;
import org.apache.lucene.analysis.TokenStream;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;

/** `lowercase` without a language: Lucene's LowerCaseFilter. Test-only (see README.md). */
@NamedComponent("lowercase")
public class LowercaseFactory implements TokenFilterFactory {
    @Override
    public TokenStream create(TokenStream input) {
        return new LowerCaseFilter(input);
    }
}
